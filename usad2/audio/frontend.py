"""The student's front end (SPEC.md §1): Kaldi-compatible 128-bin log-mel fbank at 100 Hz.

Each utterance has its mean removed, then `torchaudio.compliance.kaldi.fbank` runs with a
25 ms Hanning window, 10 ms shift, htk_compat, no energy and dither 0; features are
normalised as (x - FBANK_MEAN) / (2 * FBANK_STD) with the paper's AudioSet statistics.
"""
import dataclasses

import torch
import torchaudio

SAMPLE_RATE = 16000
FBANK_MEAN = -4.268
FBANK_STD = 4.569


@dataclasses.dataclass(frozen=True)
class FbankConfig:
    """Front-end settings; saved in every export so loading needs nothing else."""
    sample_rate: int = SAMPLE_RATE
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    mean: float = FBANK_MEAN
    std: float = FBANK_STD

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    @property
    def window_samples(self):
        return int(round(self.sample_rate * self.frame_length_ms / 1000))

    @property
    def shift_samples(self):
        return int(round(self.sample_rate * self.frame_shift_ms / 1000))


def num_frames(num_samples, config=FbankConfig()):
    """Frames Kaldi's fbank yields for `num_samples` (snip_edges=True); 0 if too short.

    Works elementwise on integer tensors as well as on ints.
    """
    w, s = config.window_samples, config.shift_samples
    if isinstance(num_samples, torch.Tensor):
        return torch.where(num_samples < w, torch.zeros_like(num_samples),
                           torch.div(num_samples - w, s, rounding_mode="floor") + 1)
    return 0 if num_samples < w else (num_samples - w) // s + 1


def fbank_one(wave, config=FbankConfig()):
    """(N,) float waveform in [-1, 1] at 16 kHz -> (T, num_mel_bins) normalised fbank."""
    wave = wave.to(torch.float32)
    wave = wave - wave.mean()
    feats = torchaudio.compliance.kaldi.fbank(
        wave.unsqueeze(0) * 32768.0,  # Kaldi's int16 scale, as the paper's AudioSet statistics assume
        sample_frequency=config.sample_rate,
        num_mel_bins=config.num_mel_bins,
        frame_length=config.frame_length_ms,
        frame_shift=config.frame_shift_ms,
        window_type="hanning",
        htk_compat=True,
        use_energy=False,
        dither=0.0,
    )
    return (feats - config.mean) / (2 * config.std)


def compute_fbank(wavs, lengths=None, config=FbankConfig()):
    """Batched front end.

    wavs: (B, N) float tensor (zero-padded) or a list of 1-D tensors; lengths: (B,) valid
    samples (default: all). Returns feats (B, T, num_mel_bins) zero-padded and feat_lengths (B,).
    Padding never influences an utterance's features: each is computed on its own samples.
    """
    if isinstance(wavs, (list, tuple)):
        if lengths is None:
            lengths = torch.tensor([len(w) for w in wavs], dtype=torch.long)
        items = list(wavs)
    else:
        if lengths is None:
            lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long)
        items = [wavs[i] for i in range(wavs.shape[0])]
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    feats = []
    for wave, n in zip(items, lengths.tolist()):
        if n < config.window_samples:
            raise ValueError(f"utterance of {n} samples is shorter than one {config.frame_length_ms} ms window")
        feats.append(fbank_one(wave[:n], config))
    feat_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    out = feats[0].new_zeros(len(feats), int(feat_lengths.max()), config.num_mel_bins)
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
    return out, feat_lengths
