"""Whisper encoder as a teacher: family `whisper` (HF and openai-whisper checkpoint formats).

Checkpoints (`checkpoint` path or card `source.path`):
- a Hugging Face dir (WhisperModel / WhisperForConditionalGeneration / WhisperEncoder
  save_pretrained: config.json + weights); only the encoder weights (`model.encoder.*` or
  `encoder.*`) are read, the decoder is never built;
- an openai-whisper `.pt` file: {"dims": {...}, "model_state_dict": {...}}; its encoder keys are
  mapped onto transformers' WhisperEncoder names by `openai_to_hf` (openai-whisper itself is not
  needed). Both end in the same `transformers.WhisperEncoder`.

Front end (Whisper's own): 16 kHz, periodic Hann STFT n_fft 400 hop 160 (centred), power
spectrum without the last frame, Slaney mel bank (n_mels from the checkpoint, 128 for large-v3),
log10 clamped at 1e-10, floored at max - 8, then (x + 4) / 4. Long inputs are cut into 30 s
windows (480000 samples); each window is zero-padded to 30 s, its log-mel computed on its own
(as the HF feature extractor does per window; openai-whisper computes the max over the whole
file), encoded to 1500 frames, and cut to ceil(n / 320) frames of its n real samples.
The encoder attends over the whole padded window, as Whisper was trained.

Layer k (1-based) = hidden_states[k] of transformers' encoder: block k's output for k < L and
the final LayerNorm of block L's output for k = L (`layer_tensor: block`); or block k's FFN
output fc2(...) before the residual sum (`layer_tensor: ffn`).
Frame 0 is centred at 0 s: mel frame t is centred on sample 160 t (centred STFT), conv2
(kernel 3, stride 2, pad 1) output j is centred on mel frame 2j, i.e. j * 20 ms.
"""
import math
import os

import torch

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher, register_family
from usad2.teachers.families import common

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
WINDOW_SAMPLES = 30 * SAMPLE_RATE
MEL_FRAMES = WINDOW_SAMPLES // HOP


# ----------------------------------------------------------------------------- front end
def mel_filters(n_mels):
    """(n_mels, 201) Slaney-scale, Slaney-normalised mel bank (librosa's default, Whisper's)."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                           max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney",
                           mel_scale="slaney")
    return torch.from_numpy(bank).float().T.contiguous()


def log_mel(windows, filters):
    """(W, 480000) zero-padded 30 s windows -> (W, n_mels, 3000) Whisper log-mel features."""
    stft = torch.stft(windows, N_FFT, HOP, window=torch.hann_window(N_FFT, device=windows.device),
                      return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = filters.to(windows.device) @ power
    logs = torch.clamp(mel, min=1e-10).log10()
    logs = torch.maximum(logs, logs.amax(dim=(1, 2), keepdim=True) - 8.0)
    return (logs + 4.0) / 4.0


def split_windows(wavs, lengths):
    """Cut each utterance into 30 s windows, zero-padded: (W, 480000), owner (W,), real samples (W,)."""
    windows, owner, real = [], [], []
    for b in range(wavs.shape[0]):
        n = int(lengths[b])
        for start in range(0, max(n, 1), WINDOW_SAMPLES):
            piece = wavs[b, start:min(n, start + WINDOW_SAMPLES)]
            windows.append(torch.nn.functional.pad(piece, (0, WINDOW_SAMPLES - piece.numel())))
            owner.append(b)
            real.append(piece.numel())
    return torch.stack(windows).float(), owner, real


def join_windows(per_window, owner, frames, batch):
    """Concatenate each utterance's window outputs (cut to `frames`), pad: (B, T, D), lengths (B,)."""
    seqs = [[] for _ in range(batch)]
    for w, b in enumerate(owner):
        seqs[b].append(per_window[w, :frames[w]])
    return common.pad_stack([torch.cat(s, dim=0) for s in seqs])


# ----------------------------------------------------------------------------- encoder stack
def run_encoder(encoder, feats, attention_mask=None, ffn=False):
    """Run a Whisper-style encoder (WhisperEncoder or Qwen2AudioEncoder) block by block.

    Returns (per-block tensors, final): per-block = block outputs (or FFN outputs when `ffn`),
    `final` = the last block's output (callers apply the encoder's closing norm/pool).
    """
    x = torch.nn.functional.gelu(encoder.conv1(feats))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[:x.shape[1]]
    outs = []
    with common.FfnCapture(layer.fc2 for layer in encoder.layers) as cap:
        for layer in encoder.layers:
            x = layer(x, attention_mask, layer_head_mask=None)[0]
            outs.append(x)
    return (cap.outputs if ffn else outs), x


# ----------------------------------------------------------------------------- checkpoints
OPENAI_BLOCK_MAP = {
    "attn.query": "self_attn.q_proj", "attn.key": "self_attn.k_proj", "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj", "attn_ln": "self_attn_layer_norm", "mlp.0": "fc1", "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}
OPENAI_TOP_MAP = {"conv1": "conv1", "conv2": "conv2", "ln_post": "layer_norm"}


def openai_to_hf(state):
    """openai-whisper `model_state_dict` -> transformers WhisperEncoder keys (decoder dropped)."""
    out = {}
    for key, value in state.items():
        if not key.startswith("encoder."):
            continue
        parts = key[len("encoder."):].split(".")
        if parts == ["positional_embedding"]:
            out["embed_positions.weight"] = value
        elif parts[0] == "blocks":
            inner = ".".join(parts[2:-1])
            if inner not in OPENAI_BLOCK_MAP:
                raise TeacherError(f"openai-whisper checkpoint: unknown encoder key {key}")
            out[f"layers.{parts[1]}.{OPENAI_BLOCK_MAP[inner]}.{parts[-1]}"] = value
        elif parts[0] in OPENAI_TOP_MAP:
            out[f"{OPENAI_TOP_MAP[parts[0]]}.{parts[-1]}"] = value
        else:
            raise TeacherError(f"openai-whisper checkpoint: unknown encoder key {key}")
    return out


def hf_to_openai(state):
    """Inverse of `openai_to_hf` (for writing openai-format checkpoints in tests and manifests)."""
    block_inv = {v: k for k, v in OPENAI_BLOCK_MAP.items()}
    top_inv = {v: k for k, v in OPENAI_TOP_MAP.items()}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key == "embed_positions.weight":
            out["encoder.positional_embedding"] = value
        elif parts[0] == "layers":
            out[f"encoder.blocks.{parts[1]}.{block_inv['.'.join(parts[2:-1])]}.{parts[-1]}"] = value
        else:
            out[f"encoder.{top_inv[parts[0]]}.{parts[-1]}"] = value
    return out


def openai_dims_to_config(dims):
    """openai `dims` -> WhisperConfig keyword arguments of the encoder."""
    try:
        return dict(num_mel_bins=dims["n_mels"], max_source_positions=dims["n_audio_ctx"],
                    d_model=dims["n_audio_state"], encoder_attention_heads=dims["n_audio_head"],
                    encoder_layers=dims["n_audio_layer"], encoder_ffn_dim=4 * dims["n_audio_state"])
    except KeyError as e:
        raise TeacherError(f"openai-whisper checkpoint: dims lack {e}") from None


def hf_encoder_state(state):
    """Encoder weights of an HF Whisper checkpoint, without their `model.encoder.`/`encoder.` prefix."""
    for prefix in ("model.encoder.", "encoder."):
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            return sub
    return state  # a bare WhisperEncoder save


def build_encoder(config_kwargs):
    """transformers WhisperEncoder (no decoder) from WhisperConfig keyword arguments."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    keep = {k: v for k, v in config_kwargs.items() if not k.startswith("decoder") and k != "architectures"}
    return WhisperEncoder(WhisperConfig(**keep))


def load_whisper(path):
    """A (WhisperEncoder, encoder state dict in HF names) pair from an HF dir or an openai .pt file."""
    if os.path.isdir(path):
        return build_encoder(common.read_json(os.path.join(path, "config.json"))), \
            hf_encoder_state(common.read_hf_weights(path))
    ckpt = common.read_tensors(path)
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise TeacherError(f"{path}: not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict')")
    return build_encoder(openai_dims_to_config(ckpt["dims"])), openai_to_hf(ckpt["model_state_dict"])


@register_family("whisper")
class WhisperTeacher(Teacher):
    """Frozen Whisper encoder (HF or openai-whisper checkpoint) on 30 s log-mel windows."""

    torch_compute = True

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card)
        path = common.resolve_checkpoint(card, checkpoint, cache)
        self.encoder, state = load_whisper(path)
        common.load_strict(self.encoder, state, path)
        common.freeze(self.encoder).to(device)
        cfg = self.encoder.config
        if cfg.encoder_layers != card.num_layers or cfg.d_model != card.width:
            raise TeacherError(f"teacher {card.name}: card says {card.num_layers} layers x {card.width} but "
                               f"{path} has {cfg.encoder_layers} x {cfg.d_model}")
        if cfg.max_source_positions * 2 != MEL_FRAMES:
            raise TeacherError(f"{path}: max_source_positions {cfg.max_source_positions} is not 1500 (30 s)")
        self.filters = mel_filters(cfg.num_mel_bins)
        self.device = device

    def to(self, device):
        self.encoder.to(device)
        self.device = device
        return self

    @staticmethod
    def num_frames(num_samples):
        """Frames of `num_samples` real samples: ceil(n / 320) per window."""
        return math.ceil(num_samples / (2 * HOP))

    def _extract(self, wavs, lengths, layers):
        windows, owner, real = split_windows(wavs, lengths)
        feats = log_mel(windows.to(self.device), self.filters)
        blocks, final = run_encoder(self.encoder, feats, ffn=self.card.layer_tensor == "ffn")
        if self.card.layer_tensor == "block":
            blocks[-1] = self.encoder.layer_norm(final)
        frames = [max(1, self.num_frames(n)) for n in real]
        outs, frame_lengths = [], None
        for k in layers:
            out, frame_lengths = join_windows(blocks[k - 1], owner, frames, wavs.shape[0])
            outs.append(out)
        return outs, frame_lengths
