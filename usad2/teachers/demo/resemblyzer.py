"""Resemblyzer's GE2E speaker encoder, rebuilt in torch and loaded from its `pretrained.pt`.

The network is Resemblyzer's VoiceEncoder: a 3-layer LSTM (40 -> 256 -> 256 -> 256) and a
256 -> 256 linear + ReLU on the last layer's final state (the speaker embedding, L2-normed).
Its weights load with `torch.load(weights_only=True)`; the package itself (and its webrtcvad /
librosa dependencies) is not needed.

Front end, matching `resemblyzer.audio`: the waveform is raised to -30 dBFS when quieter
(`normalize_volume(..., increase_only=True)`), then a 40-bin *power* mel spectrogram (not log)
as librosa.feature.melspectrogram computes it: n_fft 400, hop 160, periodic Hann window,
centred frames, slaney mel scale and area norm, 0-8000 Hz. Differences from Resemblyzer: no
webrtcvad silence trimming (it would change the time axis the student aligns to), and the
centring pads with zeros (librosa >= 0.10's default; older librosa reflected).
Layers 1-3 are the three LSTM layers' outputs, 256-d at 100 Hz, frame t centred at t * 10 ms;
N samples give 1 + N // 160 frames.
"""
import math

import numpy as np
import torch
import torchaudio
from torch import nn

from usad2.errors import TeacherError
from usad2.teachers.base import register_family
from usad2.teachers.demo.common import DemoTeacher

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 40
PARTIAL_FRAMES = 160  # Resemblyzer's partial utterance: 1.6 s
INT16_MAX = 2 ** 15 - 1


class VoiceEncoder(nn.Module):
    """The GE2E network with Resemblyzer's parameter names (lstm.*, linear.*)."""

    def __init__(self, n_mels=N_MELS, hidden=256, layers=3, embedding=256):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, embedding)

    def forward(self, mels):
        """Speaker embeddings (B, 256) of equal-length partials, L2-normed as Resemblyzer does."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True)

    def split_layers(self):
        """One single-layer LSTM per layer, sharing this LSTM's weights (to read every layer's output)."""
        layers = []
        for k in range(self.lstm.num_layers):
            single = nn.LSTM(self.lstm.input_size if k == 0 else self.lstm.hidden_size,
                             self.lstm.hidden_size, 1, batch_first=True)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(single, f"{name}_l0", getattr(self.lstm, f"{name}_l{k}"))
            layers.append(single)
        return nn.ModuleList(layers)


def load_voice_encoder(path):
    """A VoiceEncoder holding the weights of Resemblyzer's `pretrained.pt` (tensors only)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint["model_state"]
    except Exception as e:  # unpickling errors have many types
        from usad2.teachers.families.common import load_failure

        raise TeacherError(f"resemblyzer checkpoint {path}: cannot load ({load_failure(e)}); it is read with "
                           f"torch.load(weights_only=True)") from None
    model = VoiceEncoder()
    wanted = set(model.state_dict())
    missing = sorted(wanted - set(state))
    if missing:
        raise TeacherError(f"resemblyzer checkpoint {path}: missing {missing}")
    # similarity_weight/bias belong to the GE2E training loss, not to the encoder
    model.load_state_dict({k: state[k] for k in wanted})
    return model.eval()


def normalize_volume(wav, target_dbfs=-30.0):
    """Raise a quiet waveform to `target_dbfs` (never lowers it), as Resemblyzer's preprocessing."""
    rms = float(np.sqrt(np.mean((wav.astype(np.float64) * INT16_MAX) ** 2)))
    if rms == 0.0:
        return wav
    change = target_dbfs - 20.0 * math.log10(rms / INT16_MAX)
    return wav if change < 0 else (wav * 10.0 ** (change / 20.0)).astype(np.float32)


class MelFrontend:
    """librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40) in torch."""

    def __init__(self):
        self.window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
        self.fbank = torchaudio.functional.melscale_fbanks(
            N_FFT // 2 + 1, 0.0, SAMPLE_RATE / 2, N_MELS, SAMPLE_RATE, norm="slaney", mel_scale="slaney"
        ).to(torch.float64)

    def __call__(self, wav):
        """(N,) float waveform -> (1 + N // 160, 40) float32 power mel spectrogram."""
        x = torch.as_tensor(wav, dtype=torch.float64)
        spec = torch.stft(x, N_FFT, HOP, N_FFT, self.window, center=True, pad_mode="constant",
                          return_complex=True).abs() ** 2
        return (spec.T @ self.fbank).to(torch.float32)


def partial_slices(num_samples, rate=1.3, min_coverage=0.75):
    """Mel-frame slices of Resemblyzer's 1.6 s partial utterances (its `compute_partial_slices`)."""
    n_frames = int(np.ceil((num_samples + 1) / HOP))
    step = int(round(SAMPLE_RATE / rate / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (num_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return [slice(s, s + PARTIAL_FRAMES) for s in starts]


@register_family("resemblyzer")
class ResemblyzerTeacher(DemoTeacher):
    """Resemblyzer teacher: each LSTM layer's output, 256-d at 100 Hz."""

    def __init__(self, card, cache=None, device="cpu"):
        super().__init__(card, cache, device)
        path = self.files.get("pretrained.pt") or self.files.get("checkpoint")
        self.model = load_voice_encoder(path)
        self.layers = self.model.split_layers().eval()
        self.frontend = MelFrontend()
        self.normalize = bool(card.options.get("normalize_volume", True))
        self.target_dbfs = float(card.options.get("target_dbfs", -30.0))

    def preprocess(self, wav):
        return normalize_volume(wav, self.target_dbfs) if self.normalize else wav

    def extract_one(self, wav, layers):
        x = self.frontend(self.preprocess(wav))[None]
        outs = []
        for lstm in self.layers[:max(layers)]:
            x, _ = lstm(x)
            outs.append(x[0].numpy())
        return [outs[layer - 1] for layer in layers]

    def embed_utterance(self, wav, rate=1.3, min_coverage=0.75):
        """Resemblyzer's utterance embedding: L2-normed mean of its partials' embeddings (256,)."""
        wav = self.preprocess(np.asarray(wav, dtype=np.float32))
        slices = partial_slices(len(wav), rate, min_coverage)
        need = slices[-1].stop * HOP
        if need >= len(wav):
            wav = np.pad(wav, (0, need - len(wav)))
        mel = self.frontend(wav)
        with torch.inference_mode():
            partials = self.model(torch.stack([mel[s] for s in slices]))
        mean = partials.mean(dim=0)
        return (mean / mean.norm()).numpy()
