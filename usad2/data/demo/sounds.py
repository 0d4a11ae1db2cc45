"""General audio: clips cut from the sample files of four Debian packages.

Sources and labels (`sound_class` always, `drum_class` for single drum hits, `kit` for drum
kits, `source` always):
- hydrogen-drumkits: every layer sample of every instrument of every kit; sound_class =
  drum_class = kick, snare, hihat, cymbal, tom, clap or perc, from the instrument name
  (`drum_class_of`); kit = the kit folder. Splits hold kits out (HELD_OUT_KITS).
- sonic-pi-samples: sound_class = the file-name prefix (ambi, bass, bd, drum, elec, glitch,
  guit, loop, mehackit, misc, perc, sn, tabla, vinyl); drum_class for bd_/sn_/drum_ files.
- lmms-common: sound_class from the sample folder (basses -> bass, beats -> beat, ...);
  drum_class for the drums folder.
- sound-theme-freedesktop: desktop event sounds, sound_class `event` (the audio-channel-*
  files are spoken words and are left out).
Files of sonic-pi, lmms and freedesktop are split per class by a hash of the file name
(`stable_fraction`: seed-independent, ~15 % test and ~10 % dev where a class has enough
files), so no sample file is in two splits. A clip is either a window of a file longer than
the clip or, for shorter files (one-shots), 1-4 hits of the file at random times and gains;
a window that turns out silent is replaced by the file's loudest window.
"""
import functools
import glob
import os
import re
import xml.etree.ElementTree as ElementTree

import logging

import numpy as np

from usad2.audio.io import audio_info, load_audio
from usad2.data.demo.common import (SAMPLE_RATE, SPLITS, Clip, Job, RMS_FLOOR, peak_normalise,
                                    require_path, rms, rng_for, safe_token, split_counts,
                                    stable_fraction, write_clip)
from usad2.errors import AudioError

HYDROGEN_ROOT = "/usr/share/hydrogen/data/drumkits"
SONICPI_ROOT = "/usr/share/sonic-pi/samples"
LMMS_ROOT = "/usr/share/lmms/samples"
FREEDESKTOP_ROOT = "/usr/share/sounds/freedesktop/stereo"
HELD_OUT_KITS = {"dev": {"Audiophob"}, "test": {"The Black Pearl 1.0", "ElectricEmpireKit"}}
LMMS_CLASSES = {"basses": "bass", "bassloops": "bassloop", "beats": "beat", "drums": "drum",
                "effects": "effect", "instruments": "instrument", "latin": "latin",
                "misc": "misc", "stringsnpads": "pad"}
_DRUM_WORDS = (("kick", r"kick|bass ?drum|bassdrum|\bbd|^bd|drum_bass|dununba|sangban"),
               ("snare", r"snare|\bsn\b|^sn_|rim|stick"),
               ("hihat", r"hi-?hat|\bhh|^hh|hat"),
               ("cymbal", r"cymbal|crash|ride|china|splash|bell"),
               ("tom", r"tom"),
               ("clap", r"clap|snap"))
_AUDIO_EXT = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif")
JOB_SIZE = 40
log = logging.getLogger(__name__)


def drum_class_of(name):
    """kick, snare, hihat, cymbal, tom, clap or perc from an instrument or file name."""
    text = name.lower().replace("_", " ")
    for label, pattern in _DRUM_WORDS:
        if re.search(pattern, text) or re.search(pattern, name.lower()):
            return label
    return "perc"


def _tag(elem):
    return elem.tag.rsplit("}", 1)[-1]


def hydrogen_items(root=HYDROGEN_ROOT):
    """[(path, kit folder, instrument name)] of every sample file of every Hydrogen kit."""
    require_path(root, "hydrogen-drumkits")
    items = []
    for xml in sorted(glob.glob(os.path.join(root, "*", "drumkit.xml"))):
        kit_dir = os.path.dirname(xml)
        for inst in ElementTree.parse(xml).getroot().iter():
            if _tag(inst) != "instrument":
                continue
            name = next((c.text or "" for c in inst if _tag(c) == "name"), "")
            for elem in inst.iter():
                path = os.path.join(kit_dir, elem.text or "") if _tag(elem) == "filename" else ""
                if path and os.path.isfile(path) and name.strip():
                    items.append((path, os.path.basename(kit_dir), name.strip()))
    return sorted(set(items))


@functools.lru_cache(maxsize=None)
def source_duration(path):
    """Duration (s) of a usable sample file, None for unreadable, empty or placeholder ones
    (Hydrogen's `emptySample.flac`, a few LMMS files no decoder here reads)."""
    if "emptysample" in os.path.basename(path).lower():
        return None
    try:
        rate, frames, _ = audio_info(path)
    except AudioError:
        log.warning("demo corpus: skipping %s: no decoder here reads it", path)
        return None
    return frames / rate if frames > 0 else None


def _kit_split(kit):
    return next((s for s in ("dev", "test") if kit in HELD_OUT_KITS[s]), "train")


def sample_items():
    """[(path, source, sound_class, drum_class or None)] of sonic-pi, lmms and freedesktop."""
    items = []
    for path in sorted(glob.glob(os.path.join(require_path(SONICPI_ROOT, "sonic-pi-samples"),
                                              "*.flac"))):
        base = os.path.basename(path)
        category = base.split("_")[0]
        drum = drum_class_of(base[:-5]) if category in ("bd", "sn", "drum") else None
        items.append((path, "sonicpi", category, drum))
    lmms = require_path(LMMS_ROOT, "lmms-common")
    for folder, category in sorted(LMMS_CLASSES.items()):
        for path in sorted(glob.glob(os.path.join(lmms, folder, "*"))):
            if path.lower().endswith(_AUDIO_EXT):
                base = os.path.splitext(os.path.basename(path))[0]
                items.append((path, "lmms", category,
                              drum_class_of(base) if folder == "drums" else None))
    desktop = require_path(FREEDESKTOP_ROOT, "sound-theme-freedesktop")
    for path in sorted(glob.glob(os.path.join(desktop, "*.oga"))):
        if not os.path.basename(path).startswith("audio-channel-"):
            items.append((path, "freedesktop", "event", None))
    return items


def file_splits(items, key):
    """{path: split}: per class (key(item)), files ordered by a hash of their name; the first
    ~15 % go to test, the next ~10 % to dev (only classes with >= 3 / >= 5 files)."""
    by_class = {}
    for item in items:
        by_class.setdefault(key(item), []).append(item[0])
    result = {}
    for paths in by_class.values():
        ordered = sorted(paths, key=lambda p: stable_fraction(os.path.basename(p)))
        n = len(ordered)
        n_test = max(1, round(0.15 * n)) if n >= 3 else 0
        n_dev = max(1, round(0.1 * n)) if n >= 5 else 0
        for i, path in enumerate(ordered):
            result[path] = "test" if i < n_test else "dev" if i < n_test + n_dev else "train"
    return result


def plan_hydrogen(count, seed, lengths):
    """Jobs for `count` drum-hit clips; kits held out for dev and test."""
    rng = rng_for(seed, "hydrogen")
    pools = {s: [] for s in SPLITS}
    for path, kit, inst in hydrogen_items():
        if source_duration(path) is None:
            continue
        pools[_kit_split(kit)].append((path, kit, inst))
    clips = []
    for split, n in split_counts(count).items():
        classes = sorted({drum_class_of(i) for _, _, i in pools[split]})
        for i in range(n):
            wanted = rng.choice(classes)
            path, kit, inst = rng.choice([p for p in pools[split] if drum_class_of(p[2]) == wanted])
            labels = {"sound_class": wanted, "drum_class": wanted, "kit": safe_token(kit),
                      "source": "hydrogen"}
            spk = f"h2_{safe_token(kit)}"
            clips.append(_clip(f"{spk}-{split}{i:05d}", split, spk, labels, path, lengths, rng))
    return _jobs("hydrogen", clips)


def plan_samples(count, seed, lengths, source):
    """Jobs for `count` clips of one sample package (`sonicpi`, `lmms` or `freedesktop`)."""
    rng = rng_for(seed, source)
    items = [it for it in sample_items() if it[1] == source and source_duration(it[0])]
    splits = file_splits(items, key=lambda it: it[2])
    clips = []
    for split, n in split_counts(count).items():
        pool = [it for it in items if splits[it[0]] == split]
        classes = sorted({it[2] for it in pool})
        for i in range(n):
            wanted = rng.choice(classes)
            path, _, category, drum = rng.choice([it for it in pool if it[2] == wanted])
            labels = {"sound_class": category, "source": source}
            if drum:
                labels["drum_class"] = drum
            clips.append(_clip(f"{source}-{split}{i:05d}", split, source, labels, path, lengths,
                               rng))
    return _jobs(source, clips)


def _clip(utt, split, spk, labels, path, lengths, rng):
    """Plan one clip of file `path`: a window when the file is long enough, else hits."""
    length = round(rng.uniform(*lengths), 2)
    source_len = source_duration(path)
    spec = {"path": path, "length": length, "peak_db": round(rng.uniform(-12, -1), 1)}
    if source_len >= length + 0.05:
        spec["offset"] = round(rng.uniform(0, source_len - length), 3)
    else:
        hits = rng.randint(1, 4)
        spec["hits"] = sorted((round(rng.uniform(0, max(0.01, length - 0.3)), 3),
                               round(rng.uniform(-12, 0), 1)) for _ in range(hits))
        spec["hits"][0] = (round(min(spec["hits"][0][0], 0.2), 3), 0.0)
    return Clip(utt, "audio", split, spk, labels, f"audio/sound/{utt}.wav", spec)


def _jobs(name, clips):
    ordered = sorted(clips, key=lambda c: (c.spec["path"], c.utt))  # same file, same worker
    return [Job(f"{name}{k // JOB_SIZE:04d}", "usad2.data.demo.sounds:render",
                ordered[k:k + JOB_SIZE]) for k in range(0, len(ordered), JOB_SIZE)]


@functools.lru_cache(maxsize=16)
def _load(path):
    return load_audio(path, name=os.path.basename(path)).numpy()


def make_clip(source, spec):
    """The clip waveform (before levelling) of one spec from the 16 kHz source waveform."""
    n = round(spec["length"] * SAMPLE_RATE)
    if "offset" in spec:
        start = round(spec["offset"] * SAMPLE_RATE)
        piece = source[start:start + n]
        if rms(piece) < 3 * RMS_FLOOR * max(1e-9, float(np.max(np.abs(source)))):
            piece = _loudest_window(source, n)
        return np.pad(piece, (0, n - piece.size))
    out = np.zeros(n, np.float32)
    for onset, gain_db in spec["hits"]:
        a = round(onset * SAMPLE_RATE)
        part = source[:max(0, n - a)] * 10 ** (gain_db / 20)
        out[a:a + part.size] += part
    return out


def _loudest_window(source, n, step=SAMPLE_RATE // 4):
    starts = range(0, max(1, source.size - n + 1), step)
    best = max(starts, key=lambda s: float(np.sum(np.square(source[s:s + n]))))
    return source[best:best + n]


def render(job, out_dir):
    """Cut, mix and level every clip of `job`."""
    durations = {}
    for clip in job.clips:
        wave = make_clip(_load(clip.spec["path"]), clip.spec)
        durations[clip.utt] = write_clip(out_dir, clip, peak_normalise(wave, clip.spec["peak_db"]))
    return durations
