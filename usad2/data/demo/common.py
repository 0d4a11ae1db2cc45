"""What every demo-corpus source shares: the clip plan, jobs, audio writing and level checks.

Generation runs in two steps so that it is deterministic for a seed whatever the parallelism:
each source *plans* its clips (ids, labels, split and every random choice, from a
`random.Random` seeded by the corpus seed and the source name), grouped into `Job`s; workers
then *render* jobs, which are pure functions of their plan. Audio is written as 16 kHz mono
16-bit PCM WAV, each file atomically.
"""
import dataclasses
import hashlib
import io
import os
import random
import shutil
from typing import Optional

import numpy as np
import soundfile

from usad2.errors import AudioError, ConfigError
from usad2.utils.atomic import atomic_write_bytes

SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test")
RMS_FLOOR = 1e-3  # -60 dBFS: a clip quieter than this over its whole length counts as silent


@dataclasses.dataclass
class Clip:
    """One planned utterance: id, domain, split, speaker, labels and how to render it.

    `audio` is the wav path relative to the corpus folder; `spec` holds the source-specific
    render choices (made at plan time); `notes` the relative path of its note table, if any.
    """

    utt: str
    domain: str
    split: str
    spk: str
    labels: dict
    audio: str
    spec: dict
    notes: Optional[str] = None


@dataclasses.dataclass
class Job:
    """A batch of clips one worker renders together (same source file, SoundFont, ...)."""

    name: str
    render: str  # "module:function" called as function(job, out_dir) -> {utt: duration}
    clips: list
    spec: dict = dataclasses.field(default_factory=dict)


def rng_for(seed, source):
    """A random generator that depends only on the corpus seed and the source name."""
    return random.Random(f"usad2-demo:{seed}:{source}")


def stable_fraction(text):
    """A number in [0, 1) fixed by `text` alone (seed- and size-independent split choices)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def split_counts(total, fractions=(0.8, 0.1, 0.1)):
    """{split: count} summing to `total`, each split at least 1 when total >= 3."""
    dev = max(1, round(total * fractions[1])) if total >= 3 else 0
    test = max(1, round(total * fractions[2])) if total >= 3 else 0
    return {"train": total - dev - test, "dev": dev, "test": test}


def safe_token(text):
    """`text` as an id/label token: spaces and odd characters become '_', lowercase ASCII."""
    out = "".join(c if c.isascii() and (c.isalnum() or c in "-+.") else "_" for c in text.lower())
    return "_".join(part for part in out.split("_") if part) or "x"


def require_tool(name):
    """Fail with a ConfigError when command-line tool `name` is not installed."""
    if shutil.which(name) is None:
        raise ConfigError(f"the demo corpus needs the `{name}` program (apt package list: "
                          "tools/apt-packages.txt)")


def require_path(path, package):
    """Fail with a ConfigError when a file or folder of an apt package is missing."""
    if not os.path.exists(path):
        raise ConfigError(f"{path} is missing: install the Debian package {package} "
                          "(tools/apt-packages.txt)")
    return path


def rms(wave):
    """Root mean square of a waveform."""
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0


def peak_normalise(wave, peak_db):
    """Scale `wave` so its absolute peak is `peak_db` dBFS (a silent wave is returned as is)."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak <= 0:
        return wave.astype(np.float32)
    return (wave * (10 ** (peak_db / 20) / peak)).astype(np.float32)


def pad(wave, before, after):
    """`wave` with `before` and `after` seconds of digital silence around it."""
    return np.concatenate([np.zeros(round(before * SAMPLE_RATE), np.float32), wave,
                           np.zeros(round(after * SAMPLE_RATE), np.float32)])


def write_clip(out_dir, clip, wave):
    """Check and write one clip as 16 kHz 16-bit WAV (atomically); return its duration (s).

    Raises AudioError naming the utterance when the clip is empty or silent.
    """
    wave = np.clip(np.asarray(wave, np.float32), -1.0, 1.0)
    if wave.ndim != 1 or wave.size == 0:
        raise AudioError(f"utterance {clip.utt!r}: rendered no audio")
    level = rms(wave)
    if level < RMS_FLOOR:
        raise AudioError(f"utterance {clip.utt!r}: rendered audio is silent (RMS {level:.2e} < "
                         f"{RMS_FLOOR:g}; spec {clip.spec})")
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    atomic_write_bytes(os.path.join(out_dir, clip.audio), buffer.getvalue())
    return wave.size / SAMPLE_RATE
