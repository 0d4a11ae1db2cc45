"""The student's front end: Kaldi-compatible 128-bin log-mel fbank at 100 Hz.

Method: docs/method.md#1-student-encoder.

Each utterance has its mean removed, is scaled to the int16 range (x 32768: the paper's AudioSet
statistics, like AST's, were computed on int16-scaled waveforms), then
`torchaudio.compliance.kaldi.fbank` runs with a 25 ms Hanning window, 10 ms shift, htk_compat,
no energy and dither 0 (Kaldi's other defaults stay: pre-emphasis 0.97, per-frame DC removal,
power spectrum, FFT padded to 512, mel bins from low_freq 20 Hz to high_freq 0 = Nyquist on the HTK
mel scale 1127 ln(1 + f/700), snip_edges). Features are normalised as
(x - FBANK_MEAN) / (2 * FBANK_STD) = (x + 4.268) / (2 * 4.569).

htk_compat only moves the energy coefficient in Kaldi, so with use_energy=False it changes
nothing; likewise the per-utterance mean removal is nearly redundant with Kaldi's per-frame DC
removal (it only helps float32 precision for large offsets). Both are kept for fidelity to the
paper's settings.

Digital silence: Kaldi floors mel energies at the float32 machine epsilon before the log,
KALDI_ENERGY_FLOOR = 2**-23 = 1.1920929e-07, so an all-zero (or constant: the mean is removed)
input gives log(2**-23) = -15.942385 in every bin, i.e. SILENCE_FEATURE =
(-15.942385 + 4.268) / (2 * 4.569) = -1.2775648 after normalisation.

Frame count (snip_edges): 1 + (N - 400) // 160 for N >= 400 samples at 16 kHz, none below.
"""
import dataclasses
import math

import torch
import torchaudio

from usad2.errors import AudioError, ConfigError
from usad2.utils.dataclass_dict import check_known_keys

SAMPLE_RATE = 16000
FBANK_MEAN = -4.268
FBANK_STD = 4.569
INT16_SCALE = 32768.0
KALDI_ENERGY_FLOOR = float(torch.finfo(torch.float32).eps)  # 2**-23, Kaldi's log floor
SILENCE_LOG_MEL = math.log(KALDI_ENERGY_FLOOR)  # -15.942385...
SILENCE_FEATURE = (SILENCE_LOG_MEL - FBANK_MEAN) / (2 * FBANK_STD)  # -1.2775648...


@dataclasses.dataclass(frozen=True)
class FbankConfig:
    """Front-end settings; saved in every export so loading needs nothing else.

    window_type exists so the front end can be compared with Kaldi tools that only offer
    Kaldi's default "povey" window (fairseq2); the student always uses "hanning".
    """
    sample_rate: int = SAMPLE_RATE
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    mean: float = FBANK_MEAN
    std: float = FBANK_STD
    window_type: str = "hanning"

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Rebuild from `to_dict` output; unknown keys (a newer or foreign config) are an error."""
        check_known_keys(cls, d, "fbank config", ConfigError)
        return cls(**d)

    @property
    def window_samples(self):
        return int(round(self.sample_rate * self.frame_length_ms / 1000))

    @property
    def shift_samples(self):
        return int(round(self.sample_rate * self.frame_shift_ms / 1000))

    @property
    def silence_feature(self):
        """The normalised value every bin takes for digital silence (see the module docstring)."""
        return (SILENCE_LOG_MEL - self.mean) / (2 * self.std)


def num_frames(num_samples, config=FbankConfig()):
    """Frames Kaldi's fbank yields for `num_samples` (snip_edges=True); 0 if too short.

    Works elementwise on integer tensors as well as on ints.
    """
    w, s = config.window_samples, config.shift_samples
    if isinstance(num_samples, torch.Tensor):
        return torch.where(num_samples < w, torch.zeros_like(num_samples),
                           torch.div(num_samples - w, s, rounding_mode="floor") + 1)
    return 0 if num_samples < w else (num_samples - w) // s + 1


def fbank_one(wave, config=FbankConfig(), name=None):
    """(N,) float waveform in [-1, 1] at 16 kHz -> (T, num_mel_bins) normalised fbank.

    Raises AudioError (naming `name`) when N is shorter than one window.
    """
    if wave.dim() != 1:
        raise AudioError(f"{_who(name)}: fbank needs a 1-D waveform, got shape {tuple(wave.shape)}")
    if wave.shape[0] < config.window_samples:
        raise AudioError(f"{_who(name)}: {wave.shape[0]} samples is shorter than one "
                         f"{config.frame_length_ms} ms window ({config.window_samples} samples)")
    wave = wave.to(torch.float32)
    wave = wave - wave.mean()
    feats = torchaudio.compliance.kaldi.fbank(
        wave.unsqueeze(0) * INT16_SCALE,
        sample_frequency=config.sample_rate,
        num_mel_bins=config.num_mel_bins,
        frame_length=config.frame_length_ms,
        frame_shift=config.frame_shift_ms,
        window_type=config.window_type,
        htk_compat=True,
        use_energy=False,
        dither=0.0,
    )
    return (feats - config.mean) / (2 * config.std)


def _who(name):
    if isinstance(name, int):
        return f"batch item {name}"
    return f"utterance {name!r}" if name is not None else "waveform"


def _split_batch(wavs, lengths):
    """Normalise the two accepted batch forms to (list of 1-D tensors, (B,) long lengths)."""
    if isinstance(wavs, (list, tuple)):
        items = list(wavs)
        if lengths is None:
            lengths = [len(w) for w in items]
    else:
        if wavs.dim() != 2:
            raise AudioError(f"fbank batch: expected (B, N) waveforms, got shape {tuple(wavs.shape)}")
        items = list(wavs)
        if lengths is None:
            lengths = [wavs.shape[1]] * wavs.shape[0]
    lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
    if len(items) == 0:
        raise AudioError("fbank batch: no utterances")
    if lengths.shape != (len(items),):
        raise AudioError(f"fbank batch: {len(items)} waveforms but lengths of shape {tuple(lengths.shape)}")
    for i, (w, n) in enumerate(zip(items, lengths.tolist())):
        if n > w.shape[-1]:
            raise AudioError(f"fbank batch: utterance {i} has length {n} > its {w.shape[-1]} samples")
    return items, lengths


def compute_fbank(wavs, lengths=None, config=FbankConfig(), names=None):
    """Batched front end.

    wavs: (B, N) float tensor (zero-padded) or a list of 1-D tensors; lengths: (B,) valid
    samples (default: all). Returns feats (B, T, num_mel_bins) zero-padded and feat_lengths (B,)
    (on the input's device). Padding never influences an utterance's features: each is computed
    on its own samples only. `names` (optional utterance ids) label errors for too-short input.
    """
    items, lengths = _split_batch(wavs, lengths)
    feats = [fbank_one(w[:n], config, name=names[i] if names is not None else i)
             for i, (w, n) in enumerate(zip(items, lengths.tolist()))]
    feat_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    out = feats[0].new_zeros(len(feats), int(feat_lengths.max()), config.num_mel_bins)
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
    return out, feat_lengths.to(out.device)


class Fbank(torch.nn.Module):
    """nn.Module wrapper of compute_fbank (no parameters) so models can hold the front end.

    forward(wavs (B, N), lengths (B,)) -> (feats (B, T, num_mel_bins), feat_lengths (B,)).
    """

    def __init__(self, config=FbankConfig()):
        super().__init__()
        self.config = config

    def forward(self, wavs, lengths=None):
        return compute_fbank(wavs, lengths, self.config)

    def output_lengths(self, lengths):
        """Feature frames for sample counts (ints or tensors), without computing features."""
        return num_frames(lengths, self.config)

    def extra_repr(self):
        c = self.config
        return f"num_mel_bins={c.num_mel_bins}, window={c.window_type}, sample_rate={c.sample_rate}"
