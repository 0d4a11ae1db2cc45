"""MuQ teacher (Zhu et al., "MuQ: Self-Supervised Music Representation Learning with Mel Residual
Vector Quantization", 2025): the music expert of USAD 2.0, loaded from its Hugging Face-style dir.

Why an own module: the `muq` package pulls librosa, nnAudio, x_clip, easydict and the Hub mixin
to build training-only parts (quantizer targets, losses). Inference needs the mel front end, a
two-block residual conv subsampler and a wav2vec2-conformer encoder; the encoder is taken from
transformers (`Wav2Vec2ConformerEncoder`, exactly what the official code builds), the rest is
rebuilt here under the official parameter names (github.com/tencent-ailab/MuQ, read, not copied).

Facts from the official code:
- Checkpoint (OpenMuQ/MuQ-large-msd-iter): a dir with `config.json` (the MuQConfig fields:
  encoder_dim 1024, encoder_depth 12, conv_dim 512, n_mels 128, hop_length 240, label_rate 25,
  `stat` with melspec_2048_mean/std, `w2v2_config` = the wav2vec2-conformer config with rotary
  positions, 16 heads, FFN 4096, depthwise kernel 31) and `model.safetensors` whose keys start with
  `model.` (the MuQ wrapper holds MuQModel as `.model`). Inference uses `model.conv.*` and
  `model.conformer.*`; the training-only `model.linear.*`, `model.cls_token`,
  `model.quantizer_*` / `model.rvq.*` / `model.recon_proj.*` are ignored, anything else is an error.
  The weight-normed `pos_conv_embed` conv may be stored as `weight_g`/`weight_v` (older torch) or
  as `parametrizations.weight.original0/1`; both load. (transformers' conformer encoder builds
  but never calls pos_conv_embed; its weights are loaded anyway so the key check stays strict.)
- Input: 24 kHz mono (we resample the 16 kHz contract with torchaudio, per utterance).
- Front end: torchaudio MelSpectrogram(24000, n_fft 2048, hop 240, 128 mel; centred, reflect
  padding, power 2, HTK mel, no norm), the last frame dropped, AmplitudeToDB (10 log10, floor
  1e-10, no top_db), then (x - mean) / std with the config's stat.
- Conv subsampler: two residual conv blocks, each stride 2 in frequency and (for 25 Hz)
  stride 2 in time, kernel 3, padding 1; then channels x bands -> Linear -> encoder width.
  Frames: T_mel = n24 // 240, then T -> (T - 1) // 2 + 1 per time stride: ceil(T_mel / 4) at 25 Hz.
  Output frame k is centred on mel frame 4k, i.e. at 0.04 k s: frame_offset 0.
- Layers: transformers' hidden_states; layer k = hidden_states[k] (the last one after the
  encoder's final LayerNorm), as in the official `output.hidden_states`. `layer_tensor: ffn`
  gives block k's second feed-forward output (before its half-step residual).
- Long inputs: the official model runs the whole input at once (quadratic attention). We cut
  inputs longer than card option `max_chunk_seconds` (default 30 s, MuQ's training length) into
  chunks on the 40 ms frame grid, run each with `chunk_context_seconds` (default 2 s) of extra
  audio on both sides, keep only the chunk's own frames and concatenate, so every frame sees at
  least 2 s of context and the 25 Hz grid is kept exactly.
"""
import dataclasses
import os

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F
# Imported at module load, never inside a `torch.device("meta")` block (that breaks torch._dynamo's import).
from transformers import Wav2Vec2ConformerConfig
from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher, register_family
from usad2.teachers.families.common import (FfnCapture, freeze, load_strict, pad_stack, read_hf_weights,
                                            read_json, resolve_checkpoint)

SAMPLE_RATE = 24000  # MuQ's native rate (the card's sample_rate)
INPUT_RATE = 16000  # the data contract every teacher receives
N_FFT = 2048
IGNORED_PREFIXES = ("linear.", "cls_token", "quantizer_", "rvq.", "recon_proj.")
TIME_STRIDES = {4: (2, 2), 2: (2, 1)}


@dataclasses.dataclass
class MuQArch:
    """The MuQConfig fields inference needs (defaults = the official MuQConfig defaults)."""
    encoder_dim: int = 1024
    encoder_depth: int = 12
    conv_dim: int = 512
    n_mels: int = 128
    hop_length: int = 240
    label_rate: int = 25
    stat: dict = dataclasses.field(default_factory=dict)
    w2v2_config: dict = dataclasses.field(default_factory=dict)
    features: list = dataclasses.field(default_factory=lambda: ["melspec_2048"])

    @classmethod
    def from_config(cls, cfg, origin):
        """From a MuQ config.json dict (unknown training-only fields are ignored)."""
        if isinstance(cfg.get("config"), dict):  # some Hub mixin versions nest the init args
            cfg = cfg["config"]
        arch = cls(**{f.name: cfg[f.name] for f in dataclasses.fields(cls) if f.name in cfg})
        if list(arch.features) != ["melspec_2048"]:
            raise TeacherError(f"{origin}: features {arch.features} unsupported (MuQ uses ['melspec_2048'])")
        if int(100 // arch.label_rate) not in TIME_STRIDES:
            raise TeacherError(f"{origin}: label_rate {arch.label_rate} unsupported (25 or 50)")
        for key in ("melspec_2048_mean", "melspec_2048_std"):
            if key not in arch.stat:
                raise TeacherError(f"{origin}: stat.{key} missing")
        return arch

    @property
    def n_fold(self):
        return int(100 // self.label_rate)

    def conformer_config(self):
        """transformers' Wav2Vec2ConformerConfig from w2v2_config, width and depth from MuQConfig."""
        kw = {k: v for k, v in self.w2v2_config.items() if k not in ("model_type", "transformers_version")}
        kw.update(num_hidden_layers=self.encoder_depth, hidden_size=self.encoder_dim)
        config = Wav2Vec2ConformerConfig(**kw)
        config._attn_implementation = "eager"  # plain attention, as the official model ran
        return config


class Res2dModule(nn.Module):
    """Residual conv block (official names conv1/bn1/conv2/bn2, projection conv3/bn3)."""

    def __init__(self, idim, odim, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(idim, odim, 3, padding=1, stride=stride)
        self.bn1 = nn.BatchNorm2d(odim)
        self.conv2 = nn.Conv2d(odim, odim, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(odim)
        self.project = idim != odim or stride[0] > 1
        if self.project:
            self.conv3 = nn.Conv2d(idim, odim, 3, padding=1, stride=stride)
            self.bn3 = nn.BatchNorm2d(odim)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.project:
            x = self.bn3(self.conv3(x))
        return F.relu(x + out)


class Conv2dSubsampling(nn.Module):
    """(B, n_mels, T) normalised mel -> (B, T', encoder_dim); T' = T / time strides (rounded up)."""

    def __init__(self, conv_dim, encoder_dim, n_mels, time_strides):
        super().__init__()
        self.conv = nn.Sequential(Res2dModule(1, conv_dim, (2, time_strides[0])),
                                  Res2dModule(conv_dim, conv_dim, (2, time_strides[1])))
        self.linear = nn.Linear(conv_dim * (n_mels // 4), encoder_dim)

    def forward(self, mel):
        x = self.conv(mel[:, None])  # (B, C, F', T')
        b, c, f, t = x.shape
        return self.linear(x.permute(0, 3, 1, 2).reshape(b, t, c * f))


class MuQEncoder(nn.Module):
    """The inference part of MuQModel: `conv` + `conformer` (keys as in the checkpoint minus `model.`)."""

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        self.time_strides = TIME_STRIDES[arch.n_fold]
        self.conv = Conv2dSubsampling(arch.conv_dim, arch.encoder_dim, arch.n_mels, self.time_strides)
        self.conformer = Wav2Vec2ConformerEncoder(arch.conformer_config())

    def num_frames(self, num_samples_24k):
        """Encoder frames of a 24 kHz input: mel frames minus the dropped last one, then the strides."""
        t = torch.as_tensor(num_samples_24k) // self.arch.hop_length
        for s in self.time_strides:
            t = torch.div(t - 1, s, rounding_mode="floor") + 1
        return t.clamp(min=0)

    def forward(self, mel, layers, tensor="block"):
        """mel (1, n_mels, T) normalised -> {layer: (1, T', D)} for the 1-based `layers`."""
        x = self.conv(mel)
        if tensor == "ffn":
            watched = [layer.ffn2 for layer in self.conformer.layers]
        else:  # hidden_states[k]: block k's output, the last one after the encoder's final LayerNorm
            watched = list(self.conformer.layers[:-1]) + [self.conformer.layer_norm]
        # Hooks rather than output_hidden_states: the same on transformers 4 and 5 (whose standalone
        # encoder no longer collects hidden states).
        with FfnCapture(watched) as cap:
            self.conformer(x)
        return {k: cap.outputs[k - 1] for k in layers}


class MuQFrontend(nn.Module):
    """24 kHz samples (N,) -> normalised log-mel (n_mels, N // hop), as MuQModel.preprocessing + normalize."""

    def __init__(self, arch):
        super().__init__()
        self.hop = arch.hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=arch.hop_length, n_mels=arch.n_mels)
        self.to_db = torchaudio.transforms.AmplitudeToDB()
        self.mean = float(arch.stat["melspec_2048_mean"])
        self.std = float(arch.stat["melspec_2048_std"])

    def forward(self, wav):
        n = wav.shape[-1]
        frames = n // self.hop  # centred STFT gives n // hop + 1; MuQ drops the last
        if n <= N_FFT // 2:  # reflect padding needs more samples than half a window
            wav = F.pad(wav, (0, N_FFT // 2 + 1 - n))
        mel = self.to_db(self.mel(wav[None]))[0, :, :frames]
        return (mel - self.mean) / self.std


def encoder_state_from_checkpoint(state, model, origin):
    """Checkpoint tensors -> `model`'s key names: strip `model.`, drop training-only, map weight norm."""
    own = set(model.state_dict())
    out, unknown = {}, []
    for key, value in state.items():
        name = key[len("model."):] if key.startswith("model.") else key
        if name.startswith(IGNORED_PREFIXES):
            continue
        if name.endswith((".weight_g", ".weight_v")) and name not in own:
            stem, kind = name.rsplit(".", 1)
            name = f"{stem}.parametrizations.weight.original{0 if kind == 'weight_g' else 1}"
        elif ".parametrizations.weight.original" in name and name not in own:
            stem, kind = name.split(".parametrizations.weight.original")
            name = f"{stem}.weight_{'g' if kind == '0' else 'v'}"
        if name not in own:
            unknown.append(key)
            continue
        out[name] = value
    if unknown:
        raise TeacherError(f"{origin}: {len(unknown)} keys that MuQ inference does not know (e.g. {unknown[:3]})")
    return out


def load_muq_dir(model_dir, device="cpu"):
    """(frozen MuQEncoder, MuQFrontend) from an official MuQ dir (config.json + weights)."""
    if os.path.isfile(model_dir):
        model_dir = os.path.dirname(model_dir)
    config_path = os.path.join(model_dir, "config.json")
    arch = MuQArch.from_config(read_json(config_path), config_path)
    with torch.device("meta"):
        model = MuQEncoder(arch)
    state = encoder_state_from_checkpoint(read_hf_weights(model_dir), model, model_dir)
    load_strict(model, state, model_dir, assign=True)
    # Buffers outside the state dict (none today) would still be on meta: refuse rather than crash later.
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        raise TeacherError(f"{model_dir}: some MuQ tensors were not filled by the checkpoint")
    return freeze(model.to(device)), MuQFrontend(arch).to(device)


def chunk_spans(num_samples, total_frames, samples_per_frame, chunk_frames, context_frames):
    """[(start, end, first frame, last frame + 1)] of 24 kHz input windows and the frames each keeps.

    Window i runs over frames [i*chunk, (i+1)*chunk) plus `context_frames` on each side (clipped
    to the input); all borders are multiples of `samples_per_frame`, so frames stay on the grid.
    """
    if total_frames <= chunk_frames:
        return [(0, num_samples, 0, total_frames)]
    spans = []
    for first in range(0, total_frames, chunk_frames):
        last = min(first + chunk_frames, total_frames)
        start = max(0, first - context_frames) * samples_per_frame
        end = min(num_samples, (last + context_frames) * samples_per_frame)
        spans.append((start, end, first, last))
    return spans


@register_family("muq")
class MuQTeacher(Teacher):
    """MuQ from a local official dir; 16 kHz in, resampled to 24 kHz, layers 1..depth at 25 Hz.

    Card options: max_chunk_seconds (default 30), chunk_context_seconds (default 2).
    """

    torch_compute = True

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card)
        path = resolve_checkpoint(card, checkpoint, cache)
        self.model, self.frontend = load_muq_dir(path, device)
        self.device = torch.device(device)
        arch = self.model.arch
        if arch.encoder_depth != card.num_layers or arch.encoder_dim != card.width:
            raise TeacherError(f"teacher {card.name}: card says {card.num_layers} layers x {card.width}, {path} has "
                               f"{arch.encoder_depth} x {arch.encoder_dim}")
        if card.sample_rate != SAMPLE_RATE:
            raise TeacherError(f"teacher {card.name}: MuQ runs at {SAMPLE_RATE} Hz, card says {card.sample_rate}")
        self.samples_per_frame = arch.hop_length * arch.n_fold
        opts = card.options or {}
        frames_per_second = SAMPLE_RATE / self.samples_per_frame
        self.chunk_frames = max(1, round(float(opts.get("max_chunk_seconds", 30)) * frames_per_second))
        self.context_frames = max(0, round(float(opts.get("chunk_context_seconds", 2)) * frames_per_second))

    def to(self, device):
        self.device = torch.device(device)
        self.model.to(device)
        self.frontend.to(device)
        return self

    def num_frames(self, lengths_16k):
        """Frames of 16 kHz inputs: torchaudio's resampled length ceil(3 n / 2), then the model formula."""
        n24 = (torch.as_tensor(lengths_16k) * SAMPLE_RATE + INPUT_RATE - 1) // INPUT_RATE
        return self.model.num_frames(n24)

    def _utterance(self, wav16, layers):
        """One utterance (N,) at 16 kHz -> {layer: (T, D)}, chunked on the frame grid."""
        wav = torchaudio.functional.resample(wav16, INPUT_RATE, SAMPLE_RATE)
        total = int(self.model.num_frames(wav.shape[-1]))
        pieces = {k: [] for k in layers}
        for start, end, first, last in chunk_spans(wav.shape[-1], total, self.samples_per_frame,
                                                   self.chunk_frames, self.context_frames):
            if last <= first:
                continue
            out = self.model(self.frontend(wav[start:end])[None], layers, self.card.layer_tensor)
            offset = start // self.samples_per_frame
            for k in layers:
                pieces[k].append(out[k][0, first - offset:last - offset])
        width = self.model.arch.encoder_dim
        return {k: torch.cat(v) if v else wav.new_zeros(0, width) for k, v in pieces.items()}

    def _extract(self, wavs, lengths, layers):
        per_utt = [self._utterance(wavs[b, :int(lengths[b])].to(self.device, torch.float32), layers)
                   for b in range(wavs.shape[0])]
        frame_lengths = self.num_frames(lengths)
        outputs = []
        for k in layers:
            padded, got = pad_stack([u[k] for u in per_utt])
            if not torch.equal(got, frame_lengths):
                raise TeacherError(f"teacher {self.name}: frame counts {got.tolist()} differ from the formula "
                                   f"{frame_lengths.tolist()}")
            outputs.append(padded)
        return outputs, frame_lengths
