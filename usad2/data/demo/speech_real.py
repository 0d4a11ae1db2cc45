"""Real recorded speech: KTuberling's object words and KLettres' letters and syllables.

Both KDE games ship one recorded voice per language folder, listed in XML themes
(`/usr/share/ktuberling/sounds/<lang>.soundtheme`, `/usr/share/klettres/<lang>/sounds.xml`);
only entries whose file exists are used, each file once, and the Serbian script-variant
folders (`sr@latin`, ...: byte-identical copies of `sr`) are skipped.
Speaker = source + folder. Labels: KTuberling `word` (the theme's
language-independent sound name, e.g. `egypt_camel`); KLettres `letter` (alphabet) or `word`
(syllables); both `language` (folder, `en_GB` -> `en`), `voice` (= speaker) and `source`.
Splits hold speakers out (fixed lists below), so dev/test voices are never heard in train.
When more clips are asked for than files exist, files repeat with a different speed
perturbation (0.9-1.1), padding and level.
"""
import functools
import glob
import os
import re

from usad2.audio.io import load_audio
from usad2.audio.resample import sox_resample_array
from usad2.data.demo.common import (SAMPLE_RATE, SPLITS, Clip, Job, pad, peak_normalise,
                                    require_path, rng_for, split_counts, write_clip)
from usad2.data.demo.speech_synth import trim_silence

KTUBERLING_ROOT = "/usr/share/ktuberling/sounds"
KLETTRES_ROOT = "/usr/share/klettres"
KTUBERLING_SPLIT = {"dev": {"el", "nl", "pt", "wa"}, "test": {"gl", "sl", "it", "ro", "sv"}}
KLETTRES_SPLIT = {"dev": {"da", "it", "nds"}, "test": {"en_GB", "nl", "uk", "cs"}}
_ENTRY = re.compile(r'<sound\s+name="([^"]+)"\s+file="([^"]+)"')
JOB_SIZE = 40


def _split_of(folder, table):
    for split in ("dev", "test"):
        if folder in table[split]:
            return split
    return "train"


def ktuberling_items(root=KTUBERLING_ROOT):
    """[(path, folder, sound name)] of every existing KTuberling recording, each file once."""
    require_path(root, "ktuberling-data")
    seen, items = set(), []
    for theme in sorted(glob.glob(os.path.join(root, "*.soundtheme"))):
        with open(theme, encoding="utf-8") as f:
            for name, rel in _ENTRY.findall(f.read()):
                path, folder = os.path.join(root, rel), rel.split("/")[0]
                if "@" not in folder and path not in seen and os.path.isfile(path):
                    seen.add(path)
                    items.append((path, folder, name))
    return items


def klettres_items(root=KLETTRES_ROOT):
    """[(path, folder, kind, name)] of every existing KLettres recording (kind letter/word)."""
    require_path(root, "klettres-data")
    seen, items = set(), []
    for xml in sorted(glob.glob(os.path.join(root, "*", "sounds.xml"))):
        with open(xml, encoding="utf-8") as f:
            text = f.read()
        for section, kind in (("alphabet", "letter"), ("syllables", "word")):
            body = re.search(rf"<{section}>(.*?)</{section}>", text, re.S)
            for name, rel in _ENTRY.findall(body.group(1) if body else ""):
                path = os.path.join(root, rel)
                if path not in seen and os.path.isfile(path):
                    seen.add(path)
                    items.append((path, rel.split("/")[0], kind, name))
    return items


def plan_ktuberling(count, seed):
    """Jobs for `count` KTuberling clips, speakers split by folder."""
    items = [(p, folder, "word", name) for p, folder, name in ktuberling_items()]
    return _plan("ktuberling", items, KTUBERLING_SPLIT, count, seed)


def plan_klettres(count, seed):
    """Jobs for `count` KLettres clips, speakers split by folder."""
    return _plan("klettres", klettres_items(), KLETTRES_SPLIT, count, seed)


def _plan(source, items, split_table, count, seed):
    rng = rng_for(seed, source)
    pools = {s: [it for it in items if _split_of(it[1], split_table) == s] for s in SPLITS}
    clips = []
    for split, n in split_counts(count).items():
        pool = pools[split]
        order = rng.sample(pool, len(pool))
        for i in range(n):
            path, folder, kind, name = order[i % len(order)]
            repeat = i >= len(order)
            spec = {"path": path, "speed": round(rng.uniform(0.9, 1.1), 3) if repeat else 1.0,
                    "before": round(rng.uniform(0.05, 0.3), 3),
                    "after": round(rng.uniform(0.05, 0.3), 3),
                    "peak_db": round(rng.uniform(-12, -1), 1)}
            spk = f"{source}_{folder}"
            labels = {kind: name, "language": folder.split("_")[0].split("@")[0],
                      "voice": spk, "source": source}
            utt = f"{spk}-{split}{i:05d}"
            clips.append(Clip(utt, "speech", split, spk, labels, f"audio/speech/{utt}.wav", spec))
    return [Job(f"{source}{k // JOB_SIZE:04d}", "usad2.data.demo.speech_real:render",
                clips[k:k + JOB_SIZE]) for k in range(0, len(clips), JOB_SIZE)]


@functools.lru_cache(maxsize=64)
def _load(path):
    return load_audio(path, name=os.path.basename(path)).numpy()


def render(job, out_dir):
    """Load (16 kHz), speed-perturb, trim, pad and level every clip of `job`."""
    durations = {}
    for clip in job.clips:
        wave = _load(clip.spec["path"])
        if clip.spec["speed"] != 1.0:  # play faster/slower: resample as if recorded at sr*speed
            wave = sox_resample_array(wave, round(SAMPLE_RATE * clip.spec["speed"]), SAMPLE_RATE,
                                      name=clip.utt)
        wave = pad(peak_normalise(trim_silence(wave), clip.spec["peak_db"]), clip.spec["before"],
                   clip.spec["after"])
        durations[clip.utt] = write_clip(out_dir, clip, wave)
    return durations
