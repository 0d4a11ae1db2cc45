"""Stage 2 of the recipe: turn a prepared data dir into 16 kHz mono WAV files, ready for training.

`format_data(in_dir, out_dir, config)` reads every utterance of a Kaldi data dir (any format the
audio loader decodes, Kaldi segments honoured), converts it to usad2's audio contract (16 kHz mono,
usad2.audio.io) and writes one WAV file per output utterance under `<out_dir>/audio/`, plus a data
dir whose wav.scp points at those files (paths as `<out_dir>/audio/...`, relative when `out_dir`
is, as in Kaldi) with utt2dur and utt2num_samples.

Rules (documented choices; docs/method.md#37-training-data):
- Segmentation: an utterance of a domain in `segment_domains` (sound and music by default) that is
  longer than `segment_seconds` is cut into consecutive pieces of exactly that length (the last
  one may be shorter); piece ids are `<utt>-<start in ms, 7 digits>`. Every utterance-keyed table
  (utt2spk, utt2domain, utt2weight, utt2<label>) is copied to the pieces. A transcript (`text`)
  cannot be split, so when any utterance was cut the text file is left out, with a warning.
- Filtering, per output piece: shorter than `min_seconds`, longer than `max_seconds`, or silent
  (its loudest 50 ms frame is below `silence_dbfs` dBFS RMS, frame mean removed: a short loud
  event keeps a clip, a DC offset does not; a full-scale square wave is 0 dBFS) is dropped. So are unreadable files when `drop_unreadable`
  (otherwise they stop the stage with the loader's error). Each dropped id and its reason go to
  the `dropped` file of the output dir, and the log prints counts per reason.
- File names: `audio/<2 hex digits of the id's sha1>/<id, %-quoted>.wav` (256 sub-folders keep
  folders small on large corpora; quoting keeps any id a single safe file name). A leading dot is
  quoted as `%2E` (ids `.` and `..` are legal); a quoted id over 200 characters is cut and ends in
  `~<sha1 of the id>` so the name stays under the 255-byte limit of file systems.
- Idempotence: the output dir is built in a temporary folder and renamed whole (atomic_dir), then
  validated with its audio and stamped with a fingerprint of the options and the input data dir's
  files; a matching stamp skips the stage, `force` redoes it.
"""
import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import logging
import math
import multiprocessing
import os
import urllib.parse

import numpy as np
import soundfile

from usad2.audio.io import SAMPLE_RATE, audio_info, load_audio
from usad2.data.datadir import DataDir, load_data_dir
from usad2.data.kinds import kind_for
from usad2.errors import AudioError, ConfigError, DataDirError
from usad2.utils import stamp
from usad2.utils.atomic import atomic_dir, atomic_write_text

logger = logging.getLogger("usad2")

SILENCE_FRAME_SECONDS = 0.05
SAMPLE_FORMATS = {"int16": "PCM_16", "float": "FLOAT"}
_DERIVED = ("segments", "utt2dur", "utt2num_samples")  # recomputed, never copied to the output


@dataclasses.dataclass(frozen=True)
class FormatConfig:
    """Options of stage 2 (see the module docstring for their meaning)."""

    min_seconds: float = 0.5
    max_seconds: float = 30.0
    segment_seconds: float = 10.0
    segment_domains: tuple = ("audio", "music")
    silence_dbfs: float = -60.0
    sample_format: str = "int16"
    drop_unreadable: bool = False
    allow_pipes: bool = False

    def check(self):
        """Raise ConfigError on inconsistent options."""
        if self.sample_format not in SAMPLE_FORMATS:
            raise ConfigError(f"sample format {self.sample_format!r}: expected one of "
                              f"{', '.join(SAMPLE_FORMATS)}")
        if self.min_seconds < 0 or self.max_seconds <= self.min_seconds:
            raise ConfigError(f"duration bounds: need 0 <= min_seconds < max_seconds, got "
                              f"{self.min_seconds} and {self.max_seconds}")
        if self.segment_seconds > 0 and self.segment_seconds < self.min_seconds:
            raise ConfigError(f"segment_seconds {self.segment_seconds} is below min_seconds "
                              f"{self.min_seconds}: every piece would be dropped")


@dataclasses.dataclass(frozen=True)
class _Task:
    """One input utterance to convert (picklable, for worker processes)."""

    utt: str
    path: str
    start: float
    end: object
    domain: str


MAX_NAME_CHARS = 200  # of the quoted id; file systems allow 255 bytes per name


def audio_file_name(utt):
    """A safe file name for any legal id: `<id, %-quoted>.wav` (module docstring).

    Quoting keeps `/` and every non-ASCII character out of the name; a leading dot is quoted too
    (`%2E`), so ids made of dots (`.`, `..`) are neither special folders nor hidden names without
    an extension; a quoted id longer than MAX_NAME_CHARS (28 CJK characters quote to 252) is cut
    and ends in `~<sha1 of the id>`, which keeps names distinct and under the 255-byte limit.
    """
    name = urllib.parse.quote(utt, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > MAX_NAME_CHARS:
        head = name[:MAX_NAME_CHARS - 41]
        cut = head.rfind("%", len(head) - 2)
        head = head[:cut] if cut >= 0 else head  # never end inside a %XX escape
        name = head + "~" + hashlib.sha1(utt.encode("utf-8")).hexdigest()
    return name + ".wav"


def audio_relpath(utt):
    """Path of utterance `utt`'s WAV file inside the output dir (see the module docstring)."""
    bucket = hashlib.sha1(utt.encode("utf-8")).hexdigest()[:2]
    return os.path.join("audio", bucket, audio_file_name(utt))


def piece_id(utt, start_sample):
    """Id of the piece of `utt` that starts at sample `start_sample` (16 kHz): `<utt>-<ms>`."""
    return f"{utt}-{int(round(start_sample * 1000 / SAMPLE_RATE)):07d}"


def loudest_frame_dbfs(wave, frame=int(SILENCE_FRAME_SECONDS * SAMPLE_RATE)):
    """RMS level in dBFS of the loudest `frame`-sample frame of `wave` (-inf for digital zero).

    Each frame's mean is removed first: a DC offset is not sound and must not make a silent
    recording look loud.
    """
    x = np.asarray(wave, dtype=np.float64)
    usable = max(frame, len(x) - len(x) % frame)
    padded = np.zeros(usable)
    padded[:min(len(x), usable)] = x[:usable]
    frames = padded.reshape(-1, frame)
    rms = np.sqrt(np.mean((frames - frames.mean(axis=1, keepdims=True)) ** 2, axis=1)).max()
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def split_points(num_samples, segment_samples):
    """Start sample of each piece when cutting `num_samples` into `segment_samples` pieces."""
    if segment_samples <= 0 or num_samples <= segment_samples:
        return [0]
    return list(range(0, num_samples, segment_samples))


def _known_seconds(task, allow_pipes):
    """Duration of the task's audio from the segment or the file header, None when unknown."""
    if task.end is not None:
        return task.end - task.start
    if task.path.rstrip().endswith("|"):
        return None
    sr, frames, _ = audio_info(task.path, task.utt, allow_pipes=allow_pipes)
    return frames / sr - task.start


def _verdict(wave, config):
    """Why a piece is dropped, or None when it is kept."""
    seconds = len(wave) / SAMPLE_RATE
    if seconds < config.min_seconds:
        return f"too_short ({seconds:.3f} s < {config.min_seconds} s)"
    if seconds > config.max_seconds:
        return f"too_long ({seconds:.3f} s > {config.max_seconds} s)"
    level = loudest_frame_dbfs(wave)
    if level < config.silence_dbfs:
        return f"silent (loudest {SILENCE_FRAME_SECONDS * 1000:.0f} ms frame {level:.1f} dBFS " \
               f"< {config.silence_dbfs} dBFS)"
    return None


def _convert(task, config, tmp_dir):
    """Convert one utterance: returns ([(output id, num samples)], [(dropped id, reason)])."""
    segmenting = config.segment_seconds > 0 and task.domain in config.segment_domains
    try:
        if not segmenting:
            known = _known_seconds(task, config.allow_pipes)
            if known is not None and known > config.max_seconds + 0.5:
                return [], [(task.utt, f"too_long ({known:.3f} s > {config.max_seconds} s)")]
        wave = load_audio(task.path, name=task.utt, allow_pipes=config.allow_pipes,
                          start=task.start, end=task.end).numpy()
    except AudioError as e:
        if not config.drop_unreadable:
            raise
        return [], [(task.utt, f"unreadable ({e})")]
    seg = int(round(config.segment_seconds * SAMPLE_RATE)) if segmenting else 0
    starts = split_points(len(wave), seg)
    kept, dropped = [], []
    for start in starts:
        piece = wave[start:start + seg] if len(starts) > 1 else wave
        out_id = piece_id(task.utt, start) if len(starts) > 1 else task.utt
        reason = _verdict(piece, config)
        if reason is not None:
            dropped.append((out_id, reason))
            continue
        path = os.path.join(tmp_dir, audio_relpath(out_id))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_wav(path, piece, SAMPLE_FORMATS[config.sample_format])
        kept.append((out_id, len(piece)))
    return kept, dropped


def write_wav(path, wave, subtype):
    """Write a 16 kHz WAV: encoded in memory by libsndfile, then written with os.write.

    libsndfile reports a failed write (disk full) as `LibsndfileError: System error.`, which is
    no OSError; writing the bytes ourselves raises the real OSError (ENOSPC, EFBIG, EDQUOT), which
    the command line reports as one line, and a partial file is removed.
    """
    buf = io.BytesIO()
    soundfile.write(buf, wave, SAMPLE_RATE, subtype=subtype, format="WAV")
    data = memoryview(buf.getbuffer())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        while data:
            data = data[os.write(fd, data):]
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def _worker_init():
    import torch

    torch.set_num_threads(1)


def _convert_all(tasks, config, tmp_dir, nj):
    """Run `_convert` over the tasks, in `nj` worker processes when nj > 1; results in order.

    Workers are forked (as torch's DataLoader does on Linux: no re-import of torch per worker,
    which costs seconds on a busy machine); each uses one torch thread.
    """
    if nj <= 1 or len(tasks) < 2:
        return [_convert(t, config, tmp_dir) for t in tasks]
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with concurrent.futures.ProcessPoolExecutor(nj, mp_context=context,
                                                initializer=_worker_init) as pool:
        futures = [pool.submit(_convert, t, config, tmp_dir) for t in tasks]
        return [f.result() for f in futures]


def _tasks(data):
    tasks = []
    for utt in data.utt_ids:
        src = data.source(utt)
        tasks.append(_Task(utt, src.path, src.start, src.end, data.domain(utt)))
    return tasks


def _output_datadir(data, results, out_dir):
    """The output DataDir: new wav.scp/utt2dur/utt2num_samples, utterance tables copied."""
    parent, samples = {}, {}
    for task_utt, (kept, _) in zip(data.utt_ids, results):
        for out_id, n in kept:
            parent[out_id], samples[out_id] = task_utt, n
    if not parent:
        return None, False
    was_cut = any(p != o for o, p in parent.items())
    tables = {"wav.scp": {o: os.path.join(out_dir, audio_relpath(o)) for o in parent},
              "utt2num_samples": samples,
              "utt2dur": {o: n / SAMPLE_RATE for o, n in samples.items()}}
    for name, table in data.tables.items():
        if name in _DERIVED or kind_for(name).key != "utt" or (name == "text" and was_cut):
            continue
        copied = {o: table[p] for o, p in parent.items() if p in table}
        if copied:
            tables[name] = copied
    if was_cut and "text" in data.tables:
        logger.warning("format: leaving text out: some utterances were cut into pieces and a "
                       "transcript cannot be split")
    return DataDir._from_tables(tables, allow_pipes=False), was_cut


def _summary(data, results, output):
    reasons = collections.Counter(r.split(" ", 1)[0] for _, drops in results for _, r in drops)
    hours = sum(output.table("utt2dur").values()) / 3600 if output is not None else 0.0
    return {"input_utterances": len(data), "output_utterances": len(output or ()),
            "hours": round(hours, 6), "dropped": dict(sorted(reasons.items()))}


def _refuse_foreign(out_dir):
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not (
            os.path.isfile(os.path.join(out_dir, "wav.scp"))
            or os.path.isfile(stamp.stamp_path(out_dir))):
        raise DataDirError(f"{out_dir}: exists, is not empty and is not a formatted data dir; "
                           "refusing to replace it")


def format_fingerprint(in_dir, out_dir, config):
    """Fingerprint of one stage-2 run: options, output location and the input's index files."""
    args = {"stage": "format_data", "version": 1, "out_dir": os.fspath(out_dir),
            "config": dataclasses.asdict(config), "sample_rate": SAMPLE_RATE}
    return stamp.fingerprint(args, [in_dir])


def format_data(in_dir, out_dir, config=FormatConfig(), nj=1, force=False):
    """Format data dir `in_dir` into `out_dir` (module docstring); returns a summary dict.

    The summary counts input and output utterances, output hours and drops per reason; it also
    says whether the run was skipped because a matching `.done` stamp was found.
    """
    in_dir, out_dir = os.fspath(in_dir), os.fspath(out_dir)
    config.check()
    if nj < 1:
        raise ConfigError(f"nj must be a positive number of workers, got {nj}")
    fp = format_fingerprint(in_dir, out_dir, config)
    if not force and stamp.is_done(out_dir, fp):
        logger.info("format: %s is up to date (stamp matches); skipping", out_dir)
        return {"skipped": True}
    data = load_data_dir(in_dir, allow_pipes=config.allow_pipes)
    _refuse_foreign(out_dir)
    stamp.clear(out_dir)
    tasks = _tasks(data)
    with atomic_dir(out_dir) as tmp:
        results = _convert_all(tasks, config, tmp, nj)
        output, _ = _output_datadir(data, results, out_dir)
        summary = _summary(data, results, output)
        if output is None:
            raise DataDirError(f"format {in_dir}: all {len(data)} utterances were dropped "
                               f"({summary['dropped']}); check the duration bounds and the audio")
        _write_tables(output, tmp, out_dir)
        drops = sorted(d for _, ds in results for d in ds)
        atomic_write_text(os.path.join(tmp, "dropped"), "".join(f"{i} {r}\n" for i, r in drops))
    load_data_dir(out_dir, check_audio=True)
    stamp.mark_done(out_dir, fp, info=summary)
    _log_summary(in_dir, out_dir, summary)
    return {"skipped": False, **summary}


def _write_tables(output, tmp, out_dir):
    """Check the output tables as a reader would, then write them into the temporary folder."""
    texts = output.to_texts()
    output.check(out_dir, texts=texts)
    for name, text in texts.items():
        atomic_write_text(os.path.join(tmp, name), text)


def _log_summary(in_dir, out_dir, summary):
    dropped = ", ".join(f"{k} {v}" for k, v in summary["dropped"].items()) or "none"
    logger.info("format: %s -> %s: %d input utterances, %d output utterances (%.3f h); "
                "dropped: %s (ids and reasons in %s)", in_dir, out_dir,
                summary["input_utterances"], summary["output_utterances"], summary["hours"],
                dropped, os.path.join(out_dir, "dropped"))
