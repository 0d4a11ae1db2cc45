"""The USAD 2.0 student encoder in plain torch, with no usad2 imports (vendorable).

Method: docs/method.md#1-student-encoder.

Input is the 100 Hz, 128-bin normalised log-mel fbank of `usad2.audio.frontend`; output is every
layer's hidden state at 100 / time_stride Hz.

Architecture and the choices the paper leaves open (each is a field of `EncoderConfig`):

* Conv subsampler: two Conv2d(kernel 3, padding 1) + GELU layers with `conv_channels` (64)
  channels over (time, frequency). Layer 1 strides (2, 2); layer 2 strides
  (time_stride / 2, freq_stride / 2). So 50 Hz models use strides (2,2),(1,1) (freq_stride 2, 64
  frequency rows x 64 channels = 4096 features) and 25 Hz models add the one extra x2 stride
  (docs/method.md#5-scaling) in layer 2, in time and (by default) in frequency (2048 features).
  These two choices reproduce the paper's parameter counts (25.6 / 98.9 / 338 / 695 / 1036 M).
  With padding 1, output frame t of the subsampler is centred on fbank frame `time_stride * t`
  and the output length is ceil(T / s) per layer (`EncoderConfig.output_length`).
* LayerNorm over the flattened (channels x frequency) features, then Linear to d_model.
* Convolutional positional encoder (data2vec 2.0 style): `pos_conv_layers` (5) blocks of grouped
  Conv1d (`pos_conv_groups` 16 groups) + non-affine LayerNorm + GELU, added residually. The kernel
  widths add up to `pos_conv_width` (95 = 5 x 19), so the receptive field is 95 - 5 + 1 = 91 frames.
* Transformer blocks, pre-LN (LayerNorm before attention and FFN, a final LayerNorm after the last
  block; the usual choice for distilled students, stable without warm-up tricks), FFN
  d -> ffn_mult*d -> d with GELU, residual dropout `dropout`, attention-weight dropout
  `attention_dropout`, layerdrop only in training.
* Self-attention with Transformer-XL relative positions as in Conformer encoders: sinusoidal
  embeddings of relative offsets i - j in [-(T-1), T-1], one learned d x d projection of them per
  layer (no bias), and per-layer learned biases u (content) and v (position) per head:
  score(i, j) = [(q_i + u) . k_j + (q_i + v) . p_{i-j}] / sqrt(d_head).
* Padding: a key padding mask keeps padded frames out of every attention; padded frames are set
  to zero before every convolution and in every output, so padding never changes valid outputs.

`hidden_states` = [frontend output (after LN + projection + positional conv), block 1 .. block L];
the last entry has the final LayerNorm applied (like other pre-LN encoders' last hidden state).
"""
import dataclasses
import math
from typing import List, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

_ALLOWED_STRIDES = (1, 2, 4)


@dataclasses.dataclass
class EncoderConfig:
    """Every hyper-parameter of the student; saved in exports and checkpoints as a dict."""
    d_model: int = 384
    num_layers: int = 12
    num_heads: int = 6
    ffn_mult: int = 4
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    num_mel_bins: int = 128
    conv_channels: int = 64
    time_stride: int = 2          # 2 -> 50 Hz, 4 -> 25 Hz (fbank is 100 Hz)
    freq_stride: int = 2          # frequency rows kept: num_mel_bins / freq_stride
    pos_conv_width: int = 95      # sum of the positional conv kernel widths
    pos_conv_groups: int = 16
    pos_conv_layers: int = 5
    layerdrop: float = 0.0
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        problems = []
        if self.d_model % self.num_heads:
            problems.append(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.d_model % self.pos_conv_groups:
            problems.append(f"d_model {self.d_model} is not divisible by pos_conv_groups {self.pos_conv_groups}")
        for name in ("time_stride", "freq_stride"):
            if getattr(self, name) not in _ALLOWED_STRIDES:
                problems.append(f"{name} must be one of {_ALLOWED_STRIDES}, got {getattr(self, name)}")
        if self.pos_conv_layers < 1 or self.pos_conv_width < self.pos_conv_layers:
            problems.append(f"pos_conv_width {self.pos_conv_width} must be >= pos_conv_layers {self.pos_conv_layers} >= 1")
        if self.num_layers < 1:
            problems.append(f"num_layers must be >= 1, got {self.num_layers}")
        if problems:
            raise ValueError("bad EncoderConfig: " + "; ".join(problems))

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Build from a saved dict; unknown keys are an error (a newer or foreign config)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig keys: {', '.join(unknown)}")
        return cls(**d)

    @property
    def conv_strides(self):
        """[(time, freq) stride of conv layer 1, of conv layer 2]."""
        t1, f1 = min(self.time_stride, 2), min(self.freq_stride, 2)
        return [(t1, f1), (self.time_stride // t1, self.freq_stride // f1)]

    @property
    def subsampled_bins(self):
        """Frequency rows after the subsampler (kernel 3, padding 1: ceil(F / s) per layer)."""
        f = self.num_mel_bins
        for _, s in self.conv_strides:
            f = (f - 1) // s + 1
        return f

    @property
    def pos_conv_kernels(self):
        """Kernel width of each positional conv layer; they sum to pos_conv_width."""
        base, extra = divmod(self.pos_conv_width, self.pos_conv_layers)
        return [base + (1 if i < extra else 0) for i in range(self.pos_conv_layers)]

    def output_length(self, num_fbank_frames):
        """Encoder frames for `num_fbank_frames` input frames (int or integer tensor)."""
        n = num_fbank_frames
        for s, _ in self.conv_strides:
            n = (n - 1) // s + 1
        if isinstance(n, torch.Tensor):
            return n.clamp(min=0)
        return max(n, 0)


class EncoderOutput(NamedTuple):
    """hidden_states: L+1 x (B, T', d); lengths (B,); padding_mask (B, T') True = pad."""
    hidden_states: List[torch.Tensor]
    lengths: torch.Tensor
    padding_mask: torch.Tensor


def make_padding_mask(lengths, max_len):
    """(B, max_len) bool, True at frames >= length."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def _zero_pad(x, padding_mask):
    """Zero the padded frames of (B, T, ...) x."""
    keep = (~padding_mask).to(x.dtype)
    return x * keep.view(*keep.shape, *([1] * (x.dim() - 2)))


class ConvSubsampler(nn.Module):
    """Two Conv2d(3x3, padding 1) + GELU layers over (time, freq), then LayerNorm and Linear to d."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        c = config.conv_channels
        self.convs = nn.ModuleList([
            nn.Conv2d(1 if i == 0 else c, c, kernel_size=3, stride=s, padding=1)
            for i, s in enumerate(config.conv_strides)
        ])
        features = c * config.subsampled_bins
        self.norm = nn.LayerNorm(features, eps=config.layer_norm_eps)
        self.proj = nn.Linear(features, config.d_model)

    def forward(self, feats, lengths):
        """(B, T, F) fbank -> ((B, T', d), lengths (B,)); padded input frames never leak in."""
        x = feats.unsqueeze(1)  # (B, 1, T, F)
        for conv, (s, _) in zip(self.convs, self.config.conv_strides):
            x = _zero_pad(x.transpose(1, 2), make_padding_mask(lengths, x.shape[2])).transpose(1, 2)
            x = F.gelu(conv(x))
            lengths = (lengths - 1) // s + 1
        b, c, t, f = x.shape
        x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)
        return self.proj(self.norm(x)), lengths


class ConvPositionalEncoder(nn.Module):
    """Stacked grouped Conv1d + non-affine LayerNorm + GELU; returns x + pos_conv(x)."""

    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.kernels = config.pos_conv_kernels
        self.convs = nn.ModuleList([nn.Conv1d(d, d, k, groups=config.pos_conv_groups) for k in self.kernels])
        self.eps = config.layer_norm_eps

    def forward(self, x, padding_mask):
        y = x
        for conv, k in zip(self.convs, self.kernels):
            y = _conv_over_time(conv, _zero_pad(y, padding_mask), k)
            y = F.gelu(F.layer_norm(y, y.shape[-1:], eps=self.eps))
        return _zero_pad(x + y, padding_mask)


def _conv_over_time(conv, y, k):
    """(B, T, d) -> (B, T, d): the grouped Conv1d `conv` with "same" length output.

    Run as a Conv2d with a (1, k) kernel on a channels-last (B, d, 1, T) copy (the same weights and
    numbers): oneDNN's channels-last grouped kernel is the faster one on the CPU, 1.01-1.07x per
    whole training step of the mini and 768-wide students (bench/README.md)."""
    x = F.pad(y.transpose(1, 2).unsqueeze(2), ((k - 1) // 2, k // 2)).contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, conv.weight.unsqueeze(2), conv.bias, groups=conv.groups).squeeze(2).transpose(1, 2)


def relative_sinusoids(length, d_model, device=None, dtype=torch.float32):
    """(2*length - 1, d) sinusoidal embeddings of offsets length-1, ..., 0, ..., -(length-1)."""
    offsets = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    inv = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
                    * (-math.log(10000.0) / d_model))
    angles = offsets[:, None] * inv[None, :]
    emb = torch.zeros(offsets.shape[0], d_model, device=device)
    emb[:, 0::2] = torch.sin(angles)
    emb[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return emb.to(dtype)


class RelPositionSelfAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (u, v biases, per-layer pos projection)."""

    def __init__(self, d_model, num_heads, dropout):
        super().__init__()
        self.h, self.dk = num_heads, d_model // num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.pos_proj = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.dk))
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.dk))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.dropout_p = dropout

    def _heads(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dk).transpose(1, 2)  # (B, H, T, dk)

    def forward(self, x, pos_emb, padding_mask):
        """x (B, T, d); pos_emb (2T-1, d) from `relative_sinusoids`; padding_mask (B, T)."""
        b, t, d = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.dk)
        k, v = self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        p = self.pos_proj(pos_emb).view(-1, self.h, self.dk).permute(1, 2, 0)  # (H, dk, 2T-1)
        # the 1/sqrt(dk) scale goes on the small (B, T, H, dk) factor, not on a T x T tensor
        qv = (q + self.pos_bias_v) * (1.0 / math.sqrt(self.dk))
        position = torch.matmul(qv.transpose(1, 2), p).contiguous()  # (B, H, T, 2T-1)
        # column (T-1) - i + j of row i holds offset i - j: a strided view reads it without an index
        # tensor (row stride 2T-2 shifts each row one column left; the rows do not overlap), and
        # masked_fill then writes the padded (B, H, T, T) bias in one pass
        bias = position.as_strided((b, self.h, t, t), (self.h * t * (2 * t - 1), t * (2 * t - 1), 2 * t - 2, 1),
                                   position.storage_offset() + t - 1)
        dropout_p = self.dropout_p if self.training else 0.0
        if _plain_attention_is_faster(x):
            out = _plain_attention((q + self.pos_bias_u).transpose(1, 2), k, v, bias, padding_mask, dropout_p)
        else:
            bias = bias.masked_fill(padding_mask[:, None, None, :], torch.finfo(bias.dtype).min)
            # fused kernel: softmax((q + u) k^T / sqrt(dk) + bias) v, with attention-weight dropout
            out = F.scaled_dot_product_attention((q + self.pos_bias_u).transpose(1, 2), k, v, attn_mask=bias,
                                                 dropout_p=dropout_p)
        out = out.transpose(1, 2).reshape(b, t, d)
        return self.out_proj(out)


def _plain_attention_is_faster(x):
    """True under bf16 autocast on the CPU: there torch's SDPA with a float mask runs its unfused
    reference path at fp32 cost, and the plain bf16 matmul-softmax-matmul below takes about 0.6x its
    time forward + backward (bench/README.md). Elsewhere (fp32, CUDA) the fused kernel is kept."""
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu") \
        and torch.get_autocast_dtype("cpu") == torch.bfloat16


def _plain_attention(q, k, v, bias, padding_mask, dropout_p):
    """softmax(q k^T / sqrt(dk) + bias) v with padded keys masked, as separate ops: q, k, v (B, H, T, dk),
    bias (B, H, T, T). The bias is added inside the matmul (baddbmm) and the mask applied to the sum,
    so a masked score is exactly the dtype's minimum whatever the bias."""
    b, h, t, dk = q.shape
    scores = torch.baddbmm(bias.reshape(b * h, t, t), q.reshape(b * h, t, dk), k.reshape(b * h, t, dk).transpose(1, 2),
                           alpha=1.0 / math.sqrt(dk)).view(b, h, t, t)
    scores = scores.masked_fill(padding_mask[:, None, None, :], torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if dropout_p:
        weights = dropout(weights, dropout_p)
    return torch.matmul(weights, v)


_MASK_BITS = 15


def dropout(x, p, training=True):
    """Inverted dropout (zero with probability p, scale the rest by 1 / (1 - p)), cheaper on the CPU.

    F.dropout draws one Bernoulli variate per element, about a tenth of a bf16 mini training
    step; here each element compares 15 random bits with p * 2^15, drawn four to an int64, so
    p is rounded to a multiple of 2^-15 and the scale uses the rounded value. The draws come from
    torch's default generator, so seeding and checkpointed RNG state work as for F.dropout.
    Elsewhere than the CPU this is F.dropout.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    threshold = round(p * 2 ** _MASK_BITS)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)[:n].view(x.shape)
    keep = (bits & (2 ** _MASK_BITS - 1)) >= threshold
    return x * keep * (2 ** _MASK_BITS / (2 ** _MASK_BITS - threshold))


class Dropout(nn.Module):
    """nn.Dropout with the cheaper CPU mask of `dropout`."""

    def __init__(self, p):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        return dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class FeedForward(nn.Module):
    """d -> ffn_mult*d -> d with GELU."""

    def __init__(self, d_model, hidden, activation_dropout):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)
        self.dropout = Dropout(activation_dropout)

    def forward(self, x):
        return self.fc2(self.dropout(F.gelu(self.fc1(x))))


class TransformerBlock(nn.Module):
    """Pre-LN block: x + drop(attn(LN(x))), then x + drop(ffn(LN(x)))."""

    def __init__(self, config):
        super().__init__()
        d = config.d_model
        self.attn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.attn = RelPositionSelfAttention(d, config.num_heads, config.attention_dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ffn = FeedForward(d, config.ffn_mult * d, config.activation_dropout)
        self.dropout = Dropout(config.dropout)

    def forward(self, x, pos_emb, padding_mask):
        x = x + self.dropout(self.attn(self.attn_norm(x), pos_emb, padding_mask))
        return _zero_pad(x + self.dropout(self.ffn(self.ffn_norm(x))), padding_mask)


class StudentEncoder(nn.Module):
    """fbank (B, T, num_mel_bins) + lengths -> EncoderOutput at 100 / time_stride Hz."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.subsampler = ConvSubsampler(config)
        self.pos_conv = ConvPositionalEncoder(config)
        self.dropout = Dropout(config.dropout)
        self.layers = nn.ModuleList([TransformerBlock(config) for _ in range(config.num_layers)])
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, feats, feat_lengths=None):
        if feat_lengths is None:
            feat_lengths = torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long, device=feats.device)
        feat_lengths = feat_lengths.to(device=feats.device, dtype=torch.long)
        x, lengths = self.subsampler(feats, feat_lengths)
        padding_mask = make_padding_mask(lengths, x.shape[1])
        x = self.pos_conv(_zero_pad(x, padding_mask), padding_mask)
        pos_emb = relative_sinusoids(x.shape[1], self.config.d_model, x.device, x.dtype)
        hidden = [x]
        x = self.dropout(x)
        for layer in self.layers:
            # a dropped layer (layerdrop, training only) is the identity
            if not (self.training and self.config.layerdrop > 0 and torch.rand(()) < self.config.layerdrop):
                x = layer(x, pos_emb, padding_mask)
            hidden.append(x)
        hidden[-1] = _zero_pad(self.final_norm(x), padding_mask)
        return EncoderOutput(hidden, lengths, padding_mask)
