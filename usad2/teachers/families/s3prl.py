"""Any s3prl upstream as a teacher: family `s3prl`.

Card options: `upstream` (the s3prl `-u` name, e.g. `fbank`, `wavlm_local`, `hubert_local`;
default: the card name), `extra_conf` (keyword arguments for the upstream), `normalize`
(s3prl's per-layer LayerNorm, default false), `max_chunk_seconds` (default 30). The checkpoint
path (`checkpoint=` or card `source.path`, optional for feature baselines such as `fbank`) is
passed as the upstream's `ckpt`. Nothing is downloaded: names that fetch from a URL fail without
a local `ckpt`.

Trust: several s3prl loaders (`distiller_local`, `tera_local`, `mockingjay_local`, ...) call
torch.load(weights_only=False), which runs any code pickled in the file. So before s3prl sees a
checkpoint, and any `extra_conf` value naming an existing file, usad2 reads it once with
torch.load(weights_only=True), allowing only tensors, plain containers and argparse.Namespace
(`common.prove_weights_only`); a file that needs any other class is refused with a TeacherError
unless its path is listed in $USAD2_TRUSTED_CHECKPOINTS (README "Security").

Layers: s3prl returns hidden_states[0..H-1], [0] being the input embedding (e.g. the CNN output)
when H > 1. Card layer k = hidden_states[k] for k = 1..H-1; a single-output upstream (fbank,
mel) has one layer, hidden_states[0]. `layer_tensor` must be `block` (s3prl exposes no FFN
outputs). Frame rate = 16000 / get_downsample_rates("hidden_states"); frame lengths are s3prl's
own (n - 1) // stride + 1.

Long inputs: above `max_chunk_seconds` each utterance is cut into non-overlapping chunks whose
length is a multiple of the stride, so per-chunk frame counts add up to the whole-input count;
context (and any conv receptive field) stops at chunk borders.
"""
import fractions
import os

import torch

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher, register_family
from usad2.teachers.families import common


def build_upstream(name, ckpt=None, extra_conf=None, normalize=False):
    """A frozen s3prl.nn.S3PRLUpstream (imported lazily: s3prl is heavy)."""
    from s3prl import hub
    from s3prl.nn import S3PRLUpstream

    if not hasattr(hub, name):
        raise TeacherError(f"s3prl has no upstream named {name!r}")
    origin = f"s3prl upstream {name!r}"
    if ckpt is not None:
        common.prove_weights_only(ckpt, origin)
    for key, value in (extra_conf or {}).items():
        if isinstance(value, str) and value and os.path.exists(os.path.expanduser(value)):
            common.prove_weights_only(os.path.expanduser(value), f"{origin} extra_conf {key}")
    try:
        upstream = S3PRLUpstream(name, path_or_url=ckpt, extra_conf=extra_conf, normalize=normalize)
    except (AssertionError, FileNotFoundError, KeyError, RuntimeError) as e:
        raise TeacherError(f"s3prl upstream {name!r} (ckpt {ckpt}): cannot be built: {e}") from None
    return common.freeze(upstream)


@register_family("s3prl")
class S3prlTeacher(Teacher):
    """Frozen s3prl upstream; layers from its hidden_states."""

    torch_compute = True

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card)
        opts = card.options or {}
        ckpt = None
        if checkpoint is not None or (card.source or {}).get("path"):
            ckpt = common.resolve_checkpoint(card, checkpoint, cache)
        self.upstream = build_upstream(opts.get("upstream", card.name), ckpt, opts.get("extra_conf"),
                                       bool(opts.get("normalize", False))).to(device)
        self.offset = 1 if self.upstream.num_layers > 1 else 0
        layers = self.upstream.num_layers - self.offset
        rates = set(self.upstream.downsample_rates)
        if len(rates) != 1:
            raise TeacherError(f"teacher {card.name}: s3prl layers have several strides {sorted(rates)}")
        self.stride = rates.pop()
        rate = fractions.Fraction(16000, self.stride)
        if layers != card.num_layers or rate != card.frame_rate or card.layer_tensor != "block":
            raise TeacherError(f"teacher {card.name}: card says {card.num_layers} layers at {card.frame_rate} Hz "
                               f"({card.layer_tensor}) but the upstream gives {layers} block layers at {rate} Hz")
        widths = self.upstream.hidden_sizes[self.offset:]
        if any(card.layer_width(k) != w for k, w in enumerate(widths, 1)):
            raise TeacherError(f"teacher {card.name}: card widths differ from the upstream's {widths}")
        self.chunk = max(1, int(float(opts.get("max_chunk_seconds", 30)) * 16000) // self.stride) * self.stride
        self.device = device

    def to(self, device):
        self.upstream.to(device)
        self.device = device
        return self

    def num_frames(self, num_samples):
        """s3prl's frame count: (n - 1) // stride + 1."""
        return (num_samples - 1) // self.stride + 1

    def _run(self, wavs, lengths, layers):
        hs, lens = self.upstream(wavs.to(self.device, torch.float32), lengths.to(self.device))
        return [hs[k - 1 + self.offset] for k in layers], lens[0].cpu()

    def _extract(self, wavs, lengths, layers):
        if int(lengths.max()) <= self.chunk:
            return self._run(wavs[:, :int(lengths.max())], lengths, layers)
        per_layer = [[] for _ in layers]
        for b in range(wavs.shape[0]):
            n = int(lengths[b])
            pieces = []
            for s in range(0, n, self.chunk):
                e = min(n, s + self.chunk)
                outs, lens = self._run(wavs[b:b + 1, s:e], torch.tensor([e - s]), layers)
                pieces.append([o[0, :int(lens[0])] for o in outs])
            for i in range(len(layers)):
                per_layer[i].append(torch.cat([p[i] for p in pieces], dim=0))
        outs, frame_lengths = [], None
        for seqs in per_layer:
            padded, frame_lengths = common.pad_stack(seqs)
            outs.append(padded)
        return outs, frame_lengths
