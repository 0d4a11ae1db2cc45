"""The demo's mixed-domain set: speech over music and speech over general audio, with the truth.

Built from the finished demo corpus (the combined `train`, `dev` and `test` data dirs), without
touching its clips, so every existing set and result stays as it was. Each mixed clip takes one
speech clip and one background clip (music for half the clips, general audio for the other
half) of the same split, so the set inherits the corpus's leakage-free splits. The background is
repeated to the speech clip's length and scaled so that speech holds a share of the mixture's
energy drawn uniformly from `SPEECH_SHARE`; the mixture is then peak-normalised.

The true proportions are *frame-averaged* energy shares (`frame_shares`): over 0.1 s frames,
speech's share of each frame's energy, averaged over the frames that are not digital silence.
A short word over a background that fills the whole clip holds much of the clip's energy but
little of its time; the frame average says how much of the clip each source dominates, which is
what a tagger that averages frame posteriors can estimate (on the default set it correlates
0.47 with the YAMNet tagger's p(speech), the clip-level energy share 0.16).

Output under the corpus folder:
- `mixed/audio/<utt>.wav`, and a `mixed/.done` stamp fingerprinted on (size, seed,
  MIX_VERSION) and the corpus's combined data dirs (a regenerated corpus is remixed);
- data dirs `mixed_train`, `mixed_dev`, `mixed_test`: wav.scp, utt2spk (the speech clip's
  speaker), utt2dur, `utt2domain_mix` (the true shares p_speech p_audio p_music),
  `utt2domain` (the larger share: the hard label a labelled corpus would give) and the labels of
  both sources (`utt2source` is `mixed`; note tables are left out, the background is repeated).
"""
import dataclasses
import json
import logging
import os
import random

import numpy as np

from usad2.audio.io import load_audio
from usad2.data.datadir import DataDir, load_data_dir
from usad2.data.kinds import LABEL_KIND, kind_for
from usad2.data.demo.common import SAMPLE_RATE, SPLITS, Clip, peak_normalise, write_clip
from usad2.utils import stamp

MIX_VERSION = 2  # 2: frame-averaged shares as the truth
FRAME = 1600  # samples (0.1 s) per frame of the true shares
COUNTS = {"tiny": 12, "default": 800, "large": 4000}  # mixed clips per corpus size
SHARES = {"train": 0.7, "dev": 0.15, "test": 0.15}
SPEECH_SHARE = (0.25, 0.85)  # range of speech's share of the mixture energy
PEAK_DB = -3.0
LEFT_OUT = ("utt2source", "utt2notes")  # labels the mixture does not inherit
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Mix:
    """One planned mixed clip: its sources and the speech share of its energy."""

    utt: str
    split: str
    speech: str
    background: str
    background_domain: str
    p_speech: float  # speech's share of the clip's energy (sets the background's gain)


def plan_mixes(corpus, size, seed):
    """[Mix] for `corpus` = {split: DataDir}; deterministic for (size, seed, corpus ids)."""
    rng = random.Random(f"usad2-demo-mixed:{seed}")
    mixes = []
    for split in SPLITS:
        data = corpus[split]
        by_domain = {d: [u for u in data.utt_ids if data.domain(u) == d] for d in ("speech", "music", "audio")}
        n = max(2, round(COUNTS[size] * SHARES[split]))
        for i in range(n):
            background_domain = ("music", "audio")[i % 2]
            if not by_domain["speech"] or not by_domain[background_domain]:
                continue
            mixes.append(Mix(f"mix_{background_domain}-{split}{i:05d}", split,
                             rng.choice(by_domain["speech"]), rng.choice(by_domain[background_domain]),
                             background_domain, round(rng.uniform(*SPEECH_SHARE), 4)))
    return mixes


def mix_parts(speech, background, p_speech):
    """(speech, scaled background repeated to the speech's length): speech holds a share
    `p_speech` of their summed energy."""
    reps = -(-len(speech) // len(background))
    background = np.tile(background, reps)[:len(speech)].astype(np.float64)
    speech = speech.astype(np.float64)
    e_s, e_b = float(np.sum(speech ** 2)), float(np.sum(background ** 2))
    gain = np.sqrt(e_s * (1 - p_speech) / (p_speech * e_b)) if e_b > 0 else 0.0
    return speech, gain * background


def mix_waves(speech, background, p_speech):
    """The peak-normalised sum of `mix_parts` (float32)."""
    speech, background = mix_parts(speech, background, p_speech)
    return peak_normalise(speech + background, PEAK_DB)


def frame_shares(speech, background):
    """Speech's share of the energy of each 0.1 s frame, averaged over the non-silent frames."""
    n = max(1, len(speech) // FRAME)
    e_s = np.array([np.sum(speech[i * FRAME:(i + 1) * FRAME] ** 2) for i in range(n)])
    e_b = np.array([np.sum(background[i * FRAME:(i + 1) * FRAME] ** 2) for i in range(n)])
    total = e_s + e_b
    sounding = total > 0
    return float(np.mean(e_s[sounding] / total[sounding])) if sounding.any() else 0.0


def proportions(mix, speech, background):
    """The true (p_speech, p_audio, p_music) of a Mix from its two parts (`mix_parts`)."""
    p_speech = round(frame_shares(speech, background), 4)
    p = {"speech": p_speech, "audio": 0.0, "music": 0.0}
    p[mix.background_domain] = round(1.0 - p_speech, 4)
    return (p["speech"], p["audio"], p["music"])


def _inherited_labels(data, mix):
    """{label file: value} of the mixture: the task labels of its speech and background clips."""
    labels = {}
    for name in data.files:
        if kind_for(name) is not LABEL_KIND or name in LEFT_OUT:
            continue
        for source in (mix.speech, mix.background):
            value = data.table(name).get(source)
            if value is not None:
                labels[name] = value
    return labels


def _remove_stale(folder, mixes):
    """Delete mixed wavs that the current plan does not have (an earlier size or seed)."""
    keep = {f"{m.utt}.wav" for m in mixes}
    audio = os.path.join(folder, "audio")
    for name in sorted(os.listdir(audio)) if os.path.isdir(audio) else ():
        if name not in keep:
            os.unlink(os.path.join(audio, name))


def generate_mixed(out, size, seed, force=False):
    """Write (or reuse) the mixed set under the corpus folder `out`; return its data dir summary."""
    out = os.fspath(out)
    folder = os.path.join(out, "mixed")
    fp = stamp.fingerprint({"size": size, "seed": seed, "count": COUNTS[size], "version": MIX_VERSION},
                           [os.path.join(out, s) for s in SPLITS])
    if not force and stamp.is_done(folder, fp):
        with open(stamp.stamp_path(folder), encoding="utf-8") as f:
            return json.load(f).get("info", {})
    stamp.clear(folder)
    corpus = {s: load_data_dir(os.path.join(out, s)) for s in SPLITS}
    mixes = plan_mixes(corpus, size, seed)
    summary = {}
    for split in SPLITS:
        mine = [m for m in mixes if m.split == split]
        tables = {"utt2spk": {}, "utt2dur": {}, "utt2domain": {}, "utt2domain_mix": {}}
        wav_scp = {}
        for mix in mine:
            data = corpus[split]
            speech = load_audio(data.wav_scp[mix.speech], name=mix.speech).numpy()
            background = load_audio(data.wav_scp[mix.background], name=mix.background).numpy()
            clip = Clip(mix.utt, "mixed", split, data.utt2spk[mix.speech], {},
                        os.path.join("mixed", "audio", f"{mix.utt}.wav"), {})
            duration = write_clip(out, clip, mix_waves(speech, background, mix.p_speech))
            truth = proportions(mix, *mix_parts(speech, background, mix.p_speech))
            wav_scp[mix.utt] = os.path.join(out, clip.audio)
            tables["utt2spk"][mix.utt] = clip.spk
            tables["utt2dur"][mix.utt] = round(duration, 4)
            tables["utt2domain_mix"][mix.utt] = truth
            tables["utt2domain"][mix.utt] = "speech" if truth[0] >= 0.5 else mix.background_domain
            tables.setdefault("utt2source", {})[mix.utt] = "mixed"
            for name, value in _inherited_labels(data, mix).items():
                tables.setdefault(name, {})[mix.utt] = value
        DataDir(wav_scp, **{k: v for k, v in tables.items() if v}).write(os.path.join(out, f"mixed_{split}"))
        summary[f"mixed_{split}"] = {"utterances": len(mine),
                                     "hours": round(sum(tables["utt2dur"].values()) / 3600, 4)}
    _remove_stale(folder, mixes)
    stamp.mark_done(folder, fp, summary)
    log.info("demo mixed set %s: %s", folder, json.dumps(summary))
    return summary
