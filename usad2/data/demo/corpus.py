"""Driver of the demo corpus: plan every source, render in parallel, check, write data dirs.

Output under `out` (docs/architecture.md#7-demo-corpus):
- `audio/{speech,music,sound}/<utt>.wav`: 16 kHz mono 16-bit PCM;
- `notes/<utt>.tsv`: note tables of the music clips (format: `usad2.data.demo.notes`);
- data dirs `<domain>_<split>` (domain speech/music/audio, split train/dev/test) and the
  combined `train`, `dev`, `test`, each with wav.scp (paths = `out` joined with the relative
  path, so relative to the working directory when `out` is relative, as in Kaldi), utt2spk,
  spk2utt, utt2dur, utt2domain and the task labels `utt2<label>` of the utterances that have
  them (`LABELS` lists them per domain) plus `utt2notes` (music);
- `.done`: stamp with the fingerprint of (size, seed, out, DEMO_VERSION, and the train split's
  SoundFonts where they are not the default) and a summary;
- the mixed-domain set `mixed/` and `mixed_{train,dev,test}` (`usad2.data.demo.mixed`), made
  from the finished corpus with its own stamp, so adding it changed no existing clip.
A rerun with the same fingerprint returns at once; an interrupted run resumes: each finished
job leaves `.jobs/<job>.json` (with the fingerprint), and only missing jobs render again.
Files of an earlier, different corpus that the new plan does not have are removed.
"""
import dataclasses
import importlib
import json
import logging
import multiprocessing
import os

import soundfile
from tqdm import tqdm

from usad2.data.datadir import DataDir
from usad2.data.demo import music, sounds, speech_real, speech_synth
from usad2.data.demo.common import SAMPLE_RATE, SPLITS
from usad2.data.demo.mixed import generate_mixed
from usad2.errors import AudioError, ConfigError
from usad2.utils import stamp
from usad2.utils.atomic import atomic_write_text

DEMO_VERSION = 2  # bump when the generated corpus changes for the same size and seed
DOMAINS = ("speech", "music", "audio")
# Task labels each domain's utterances carry (a clip has the subset that applies to it).
LABELS = {
    "speech": ("word", "word_category", "letter", "language", "voice", "source"),
    "music": ("instrument_family", "program", "pitch", "pitch_class", "chord_quality",
              "chord_root", "style", "groove", "key", "source"),
    "audio": ("sound_class", "drum_class", "kit", "source"),
}
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Size:
    """Clip counts per source and clip lengths (seconds) of one corpus size."""

    espeak: int
    flite: int
    ktuberling: int
    klettres: int
    notes: int
    chords: int
    grooves: int
    hydrogen: int
    sonicpi: int
    lmms: int
    freedesktop: int
    note_len: float
    chord_len: float
    groove_len: float
    sound_len: tuple


SIZES = {
    "tiny": Size(40, 12, 16, 16, 36, 24, 12, 30, 24, 24, 10, 2.0, 2.5, 3.0, (1.0, 3.0)),
    "default": Size(800, 150, 250, 250, 700, 400, 220, 450, 350, 350, 60, 2.5, 3.5, 8.0,
                    (1.5, 5.0)),
    "large": Size(4000, 700, 1200, 1200, 3500, 2000, 1100, 2500, 1800, 1800, 300, 3.0, 4.0,
                  10.0, (2.0, 8.0)),
}


def plan(size, seed, train_fonts=music.TRAIN_FONTS):
    """Every job of the corpus of `size` (a SIZES key) for `seed`, in a fixed order.

    `train_fonts` are the SoundFonts (music.FONTS names) that render the train split's music.
    """
    s = SIZES[size]
    return (speech_synth.plan_espeak(s.espeak, seed) + speech_synth.plan_flite(s.flite, seed)
            + speech_real.plan_ktuberling(s.ktuberling, seed)
            + speech_real.plan_klettres(s.klettres, seed)
            + music.plan_notes(s.notes, seed, s.note_len, train_fonts)
            + music.plan_chords(s.chords, seed, s.chord_len, train_fonts)
            + music.plan_grooves(s.grooves, seed, s.groove_len, train_fonts)
            + sounds.plan_hydrogen(s.hydrogen, seed, s.sound_len)
            + sounds.plan_samples(s.sonicpi, seed, s.sound_len, "sonicpi")
            + sounds.plan_samples(s.lmms, seed, s.sound_len, "lmms")
            + sounds.plan_samples(s.freedesktop, seed, s.sound_len, "freedesktop"))


def generate_demo(out, size="tiny", seed=0, nj=1, force=False, train_fonts=music.TRAIN_FONTS):
    """Generate (or reuse) the demo corpus of `size` for `seed` under `out`; return a summary.

    `train_fonts`: the SoundFonts of the train split's music (music.FONTS names).
    """
    train_fonts = music.check_train_fonts(train_fonts)
    if size not in SIZES:
        raise ConfigError(f"--size: one of {', '.join(SIZES)}, got {size!r}")
    if nj < 1:
        raise ConfigError(f"--nj: a positive number of workers, got {nj}")
    if any(c.isspace() for c in os.fspath(out)):
        raise ConfigError(f"--out {os.fspath(out)!r}: the path may not contain whitespace "
                          "(utt2notes lists note-table paths as label tokens)")
    identity = {"size": size, "seed": seed, "out": os.fspath(out), "version": DEMO_VERSION}
    if train_fonts != music.TRAIN_FONTS:  # the default's stamp stays what it was before the option
        identity["train_fonts"] = list(train_fonts)
    fp = stamp.fingerprint(identity)
    if force:
        stamp.clear(out)
    elif stamp.is_done(out, fp):
        log.info("demo corpus %s (size %s, seed %d) is up to date; skipping", out, size, seed)
        with open(stamp.stamp_path(out), encoding="utf-8") as f:
            return {**json.load(f).get("info", {}), **generate_mixed(out, size, seed, force)}
    stamp.clear(out)
    jobs = plan(size, seed, train_fonts)
    clips = [c for job in jobs for c in job.clips]
    log.info("demo corpus %s: size %s, seed %d, train music from %s: %d clips in %d jobs, "
             "%d worker(s)", out, size, seed, ",".join(train_fonts), len(clips), len(jobs), nj)
    durations = _render_all(jobs, os.fspath(out), fp, nj)
    _check_audio(out, clips, durations)
    _remove_orphans(out, clips)
    summary = write_data_dirs(out, clips, durations)
    stamp.mark_done(out, fp, summary)
    log.info("demo corpus %s done: %s", out, json.dumps(summary["total"]))
    return {**summary, **generate_mixed(out, size, seed, force)}


# ----------------------------------------------------------------------------------- render


def _record_path(out, job):
    return os.path.join(out, ".jobs", f"{job.name}.json")


def _load_record(out, job, fp):
    try:
        with open(_record_path(out, job), encoding="utf-8") as f:
            record = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    if record.get("fingerprint") != fp or set(record["durations"]) != {c.utt for c in job.clips}:
        return None
    return record["durations"]


def _run_job(args):
    """Worker entry: render one job, record it; returns (job name, {utt: duration})."""
    job, out, fp = args
    module, function = job.render.split(":")
    durations = getattr(importlib.import_module(module), function)(job, out)
    atomic_write_text(_record_path(out, job),
                      json.dumps({"fingerprint": fp, "durations": durations}, sort_keys=True))
    return job.name, durations


def _worker_init():
    import torch

    torch.set_num_threads(1)


def _render_all(jobs, out, fp, nj):
    durations, todo = {}, []
    for job in jobs:
        done = _load_record(out, job, fp)
        if done is None:
            todo.append(job)
        else:
            durations.update(done)
    if len(todo) < len(jobs):
        log.info("resuming: %d of %d jobs already rendered", len(jobs) - len(todo), len(jobs))
    os.makedirs(os.path.join(out, ".jobs"), exist_ok=True)
    sizes = {job.name: len(job.clips) for job in todo}
    with tqdm(total=sum(sizes.values()), unit="clip", desc="demo corpus") as bar:
        if nj == 1:
            results = map(_run_job, [(job, out, fp) for job in todo])
            for name, result in results:
                durations.update(result)
                bar.update(sizes[name])
        else:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(nj, initializer=_worker_init) as pool:
                for name, result in pool.imap_unordered(_run_job, [(j, out, fp) for j in todo]):
                    durations.update(result)
                    bar.update(sizes[name])
    return durations


def _check_audio(out, clips, durations):
    """Every clip was written, at 16 kHz mono, with the duration its renderer reported."""
    problems = []
    for clip in clips:
        path = os.path.join(out, clip.audio)
        if clip.utt not in durations or not os.path.isfile(path):
            problems.append(f"{clip.utt}: no audio at {path}")
            continue
        info = soundfile.info(path)
        if (info.samplerate, info.channels) != (SAMPLE_RATE, 1) or \
                abs(info.frames / SAMPLE_RATE - durations[clip.utt]) > 1e-6:
            problems.append(f"{clip.utt}: {path} is {info.samplerate} Hz x {info.channels} ch, "
                            f"{info.frames} frames; expected 16 kHz mono, "
                            f"{durations[clip.utt]:.3f} s")
    if problems:
        raise AudioError(f"demo corpus {out}: {len(problems)} bad clip(s): "
                         + "; ".join(problems[:10]))


def _remove_orphans(out, clips):
    """Delete wav/tsv files under audio/ and notes/ that the current plan does not have."""
    keep = {os.path.normpath(os.path.join(out, c.audio)) for c in clips}
    keep |= {os.path.normpath(os.path.join(out, c.notes)) for c in clips if c.notes}
    for top in ("audio", "notes"):
        for folder, _, files in os.walk(os.path.join(out, top)):
            for name in files:
                path = os.path.normpath(os.path.join(folder, name))
                if path not in keep:
                    os.unlink(path)


# -------------------------------------------------------------------------------- data dirs


def build_data_dir(out, clips, durations):
    """The DataDir of `clips` (wav.scp paths are `out` joined with each clip's audio path)."""
    tables = {"utt2spk": {}, "utt2dur": {}, "utt2domain": {}}
    wav_scp = {}
    for clip in clips:
        wav_scp[clip.utt] = os.path.join(out, clip.audio)
        tables["utt2spk"][clip.utt] = clip.spk
        tables["utt2dur"][clip.utt] = round(durations[clip.utt], 4)
        tables["utt2domain"][clip.utt] = clip.domain
        for label, value in clip.labels.items():
            tables.setdefault(f"utt2{label}", {})[clip.utt] = value
        if clip.notes:
            tables.setdefault("utt2notes", {})[clip.utt] = os.path.join(out, clip.notes)
    return DataDir(wav_scp, **tables)


def write_data_dirs(out, clips, durations):
    """Write `<domain>_<split>` and combined `<split>` data dirs; return their summary."""
    summary = {}
    groups = {f"{d}_{s}": [c for c in clips if c.domain == d and c.split == s]
              for d in DOMAINS for s in SPLITS}
    groups.update({s: [c for c in clips if c.split == s] for s in SPLITS})
    for name, members in groups.items():
        build_data_dir(os.fspath(out), members, durations).write(os.path.join(out, name))
        summary[name] = {"utterances": len(members),
                         "hours": round(sum(durations[c.utt] for c in members) / 3600, 4)}
    summary["total"] = {"utterances": len(clips),
                        "hours": round(sum(durations[c.utt] for c in clips) / 3600, 4)}
    return summary
