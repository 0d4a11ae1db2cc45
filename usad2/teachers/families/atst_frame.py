"""ATST-Frame teacher (Li, Shao, Li et al., "Self-supervised audio teacher-student transformer
for both clip-level and frame-level tasks", 2024): an own module that loads the official checkpoint.

Why an own module: the official code (github.com/Audio-WestlakeU/audiossl,
`audiossl/methods/atstframe`) needs pytorch-lightning, einops, torchvision and a full training
stack just to build the encoder. What it does at inference is small and is rebuilt here with the
official parameter names, so `atstframe_base.ckpt` loads without those packages.

Facts taken from the official code (read, not copied):
- Checkpoint: a Lightning `.ckpt` dict whose `state_dict` holds the whole BYOL-style pair
  (`model.student.{encoder,projector,predictor}.*`, `model.teacher.{encoder,projector}.*`). The
  official downstream loader (`get_frame_atst`) keeps `model.teacher.encoder` (the EMA teacher);
  a fine-tuned checkpoint instead carries `encoder.encoder.*`. Both prefixes are accepted here.
- Front end (`FreezingTransform`, `embedding.py`): 16 kHz, torchaudio MelSpectrogram (n_fft 1024,
  win 1024, hop 160, 64 mel, 60-7800 Hz, power 2, centred STFT with reflect padding, HTK mel),
  AmplitudeToDB(power, top_db=80) computed per utterance, then min-max scaling to [-1, 1] with
  the fixed min -79.6482 and max 50.6842.
- Encoder `FrameAST`: a 64x4 patch (all mel bins x 4 frames, flattened mel-bin-major) through
  `patch_embed.patch_embed` (Linear 256 -> D), absolute positions `pos_embed[:, 1:T+1]` (251
  rows: 1 unused + 250 patches = 10 s), pre-norm ViT blocks (`qkv` without bias, GELU MLP,
  LayerNorm eps 1e-6) whose attention masks padded keys with -10000, and `norm_frame`. The
  downstream features of layer k are `norm_frame(block_k output)` (`get_intermediate_layers`),
  which is what layer k means here for `layer_tensor: block` (card option `normalize_layers`).
  For `layer_tensor: ffn` layer k is block k's MLP branch output (before the residual sum).
- Long inputs: the official code cuts the mel into 1001-frame (10 s) chunks with no overlap and
  concatenates the chunk outputs; positions restart in each chunk. We cut at 1000 frames (card
  option `chunk_frames`) instead: 1001 is not a multiple of the 4-frame patch, so each official
  chunk silently drops one mel frame and the 40 ms grid slips by 10 ms per chunk. With 1000 every
  chunk still gives 250 patches and frame t stays centred at 0.015 + 0.04 t s.
- Frame count: (num_samples // 160 + 1) // 4 (centred STFT frames, then whole 4-frame patches).
"""
import logging

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher, register_family
from usad2.teachers.families.common import freeze, load_failure, load_strict, pad_stack, resolve_checkpoint

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
HOP = 160
N_FFT = 1024
N_MELS = 64
PATCH_FRAMES = 4
DB_MIN, DB_MAX = -79.6482, 50.6842
CHECKPOINT_PREFIXES = ("model.teacher.encoder.", "encoder.encoder.")


def num_frames(num_samples):
    """ATST-Frame frames of a 16 kHz input: centred mel frames, then whole 4-frame patches."""
    return (torch.as_tensor(num_samples) // HOP + 1) // PATCH_FRAMES


class AtstMelFrontend(nn.Module):
    """The official 64-mel front end of one utterance: (N,) samples -> (64, N // 160 + 1)."""

    def __init__(self):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            SAMPLE_RATE, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP, f_min=60, f_max=7800, n_mels=N_MELS)
        self.to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80)

    def forward(self, wav):
        n = wav.shape[-1]
        frames = n // HOP + 1
        if n <= N_FFT // 2:  # reflect padding needs more samples than half a window
            wav = F.pad(wav, (0, N_FFT // 2 + 1 - n))
        mel = self.mel(wav[None])[..., :frames]  # (1, 64, M): top_db relative to this utterance
        mel = self.to_db(mel)[0]
        return (mel - DB_MIN) / (DB_MAX - DB_MIN) * 2.0 - 1.0


class AtstAttention(nn.Module):
    """Multi-head self-attention with the official names (`qkv`, `proj`); padded keys masked."""

    def __init__(self, dim, num_heads, qkv_bias=False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, key_bias):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class AtstMlp(nn.Module):
    """fc1 -> GELU -> fc2, the official `Mlp`."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class AtstBlock(nn.Module):
    """Pre-norm transformer block; returns (block output, MLP branch output)."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, eps=1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = AtstAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = AtstMlp(dim, int(dim * mlp_ratio))

    def forward(self, x, key_bias):
        x = x + self.attn(self.norm1(x), key_bias)
        ffn = self.mlp(self.norm2(x))
        return x + ffn, ffn


class PatchEmbed(nn.Module):
    """Holds `patch_embed.patch_embed` (Linear over a flattened 64x4 mel patch)."""

    def __init__(self, dim, n_mels=N_MELS, patch_frames=PATCH_FRAMES):
        super().__init__()
        self.patch_frames = patch_frames
        self.patch_embed = nn.Linear(n_mels * patch_frames, dim)

    def forward(self, mel):
        """mel (B, F, T) -> (B, T // 4, D); features ordered (mel bin, frame in patch) as officially."""
        b, f, t = mel.shape
        w = t // self.patch_frames
        patches = mel[:, :, :w * self.patch_frames].reshape(b, f, w, self.patch_frames).permute(0, 2, 1, 3)
        return self.patch_embed(patches.reshape(b, w, f * self.patch_frames))


class FrameAST(nn.Module):
    """The ATST-Frame encoder (`model.teacher.encoder` of the official checkpoint)."""

    def __init__(self, dim=768, depth=12, num_heads=12, max_patches=250, mlp_ratio=4.0):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, dim))  # training-time mask token
        self.pos_embed = nn.Parameter(torch.zeros(1, max_patches + 1, dim))
        self.blocks = nn.ModuleList(AtstBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_frame = nn.LayerNorm(dim, eps=1e-6)

    @property
    def max_patches(self):
        return self.pos_embed.shape[1] - 1

    def forward(self, mel, patch_lengths, layers, tensor="block", normalize=True):
        """mel (B, 64, T), patch_lengths (B,) -> {layer: (B, T // 4, D)} for the 1-based `layers`."""
        x = self.patch_embed(mel)
        t = x.shape[1]
        if t > self.max_patches:
            raise TeacherError(f"ATST-Frame: {t} patches exceed the {self.max_patches} positions; chunk the input")
        x = x + self.pos_embed[:, 1:t + 1]
        padded = torch.arange(t, device=x.device)[None, :] >= patch_lengths.to(x.device)[:, None]
        key_bias = (padded.to(x.dtype) * -10000.0)[:, None, None, :]
        out = {}
        for i, block in enumerate(self.blocks[:max(layers)], start=1):
            x, ffn = block(x, key_bias)
            if i in layers:
                out[i] = ffn if tensor == "ffn" else (self.norm_frame(x) if normalize else x)
        return out


def encoder_config_from_state(state, num_heads=None, head_dim=64):
    """Encoder sizes read from the tensors: width, depth, positions; heads = width / head_dim."""
    dim = state["pos_embed"].shape[-1]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    heads = num_heads or dim // head_dim
    if heads < 1 or dim % heads:
        raise TeacherError(f"ATST-Frame: width {dim} is not divisible into {heads} heads (card option num_heads)")
    return {"dim": dim, "depth": depth, "num_heads": heads, "max_patches": state["pos_embed"].shape[1] - 1,
            "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / dim}


def encoder_state_from_checkpoint(state_dict, origin):
    """The encoder's tensors from a Lightning state_dict, prefix removed (teacher branch first)."""
    for prefix in CHECKPOINT_PREFIXES:
        sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if sub:
            return sub
    raise TeacherError(f"{origin}: no ATST-Frame encoder keys (expected prefix one of {CHECKPOINT_PREFIXES}); "
                       f"first keys: {sorted(state_dict)[:3]}")


def read_lightning_checkpoint(path):
    """The `state_dict` of a Lightning .ckpt, read with weights_only=True (nothing else unpickled).

    A checkpoint whose extra entries need arbitrary classes is refused with an explanation: save
    its `state_dict` alone (`torch.save({"state_dict": ckpt["state_dict"]}, out)`) where you trust it.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise TeacherError(f"{path}: cannot be read with torch.load(weights_only=True) ({load_failure(e)}). "
                           f"If you trust the file, "
                           f"re-save only its 'state_dict' entry and point the card to that file") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise TeacherError(f"{path}: not a Lightning checkpoint (no 'state_dict' dict)")
    return ckpt["state_dict"]


def build_encoder(state, origin, options=None, device="cpu"):
    """A frozen FrameAST holding `state` (encoder keys without prefix); strict key and shape check."""
    options = options or {}
    if "pos_embed" not in state or "blocks.0.mlp.fc1.weight" not in state:
        raise TeacherError(f"{origin}: ATST-Frame encoder keys pos_embed / blocks.0.* missing")
    cfg = encoder_config_from_state(state, options.get("num_heads"), options.get("head_dim", 64))
    with torch.device("meta"):
        model = FrameAST(**cfg)
    load_strict(model, state, origin, assign=True)
    return freeze(model.to(device))


@register_family("atst_frame")
class AtstFrameTeacher(Teacher):
    """ATST-Frame from a local official checkpoint; layers 1..depth at 25 Hz.

    Card options: chunk_frames (mel frames per chunk, multiple of 4, at most 4 x positions;
    default 1000 = 10 s), normalize_layers (apply norm_frame to block outputs, default true, as
    the official downstream features), num_heads / head_dim (default width / 64), batch_chunks
    (chunks per encoder call, default 16).
    """

    torch_compute = True

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card)
        path = resolve_checkpoint(card, checkpoint, cache)
        state = encoder_state_from_checkpoint(read_lightning_checkpoint(path), path)
        self.model = build_encoder(state, path, card.options, device)
        self.frontend = AtstMelFrontend().to(device)
        self.device = torch.device(device)
        opts = card.options or {}
        self.chunk_frames = int(opts.get("chunk_frames", 1000))
        self.normalize = bool(opts.get("normalize_layers", True))
        self.batch_chunks = int(opts.get("batch_chunks", 16))
        if self.chunk_frames % PATCH_FRAMES or self.chunk_frames // PATCH_FRAMES > self.model.max_patches:
            raise TeacherError(f"teacher {card.name}: chunk_frames {self.chunk_frames} must be a multiple of 4 and "
                               f"at most {4 * self.model.max_patches}")
        if len(self.model.blocks) != card.num_layers:
            raise TeacherError(f"teacher {card.name}: card says {card.num_layers} layers, {path} has "
                               f"{len(self.model.blocks)}")
        if card.sample_rate != SAMPLE_RATE:
            raise TeacherError(f"teacher {card.name}: ATST-Frame runs at 16000 Hz, card says {card.sample_rate}")

    def to(self, device):
        self.device = torch.device(device)
        self.model.to(device)
        self.frontend.to(device)
        return self

    def _chunks(self, wavs, lengths):
        """[(utterance index, mel chunk (64, c))]: per-utterance mel cut into chunk_frames pieces."""
        out = []
        for b in range(wavs.shape[0]):
            mel = self.frontend(wavs[b, :int(lengths[b])].to(self.device, torch.float32))
            for start in range(0, mel.shape[1], self.chunk_frames):
                piece = mel[:, start:start + self.chunk_frames]
                if piece.shape[1] >= PATCH_FRAMES:
                    out.append((b, piece))
        return out

    def _encode(self, pieces, layers):
        """Run the encoder over mel chunks in padded mini-batches; per chunk {layer: (T_c, D)}."""
        results = []
        tensor = self.card.layer_tensor
        for i in range(0, len(pieces), self.batch_chunks):
            group = pieces[i:i + self.batch_chunks]
            widths = torch.tensor([p.shape[1] for p in group])
            mel = torch.zeros(len(group), N_MELS, int(widths.max()), device=self.device)
            for j, p in enumerate(group):
                mel[j, :, :p.shape[1]] = p
            patch_len = widths // PATCH_FRAMES
            outs = self.model(mel, patch_len, set(layers), tensor, self.normalize)
            for j in range(len(group)):
                results.append({k: v[j, :int(patch_len[j])] for k, v in outs.items()})
        return results

    def _extract(self, wavs, lengths, layers):
        pieces = self._chunks(wavs, lengths)
        encoded = self._encode([p for _, p in pieces], layers)
        frame_lengths = num_frames(lengths)
        per_utt = [[] for _ in range(wavs.shape[0])]
        for (b, _), enc in zip(pieces, encoded):
            per_utt[b].append(enc)
        outputs = []
        for layer in layers:
            seqs = [torch.cat([e[layer] for e in utt]) if utt else
                    torch.zeros(0, self.model.pos_embed.shape[-1], device=self.device) for utt in per_utt]
            padded, got = pad_stack(seqs)
            if not torch.equal(got, frame_lengths):
                raise TeacherError(f"teacher {self.name}: frame counts {got.tolist()} differ from the formula "
                                   f"{frame_lengths.tolist()}")
            outputs.append(padded)
        return outputs, frame_lengths

