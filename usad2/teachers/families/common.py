"""Helpers shared by the Hugging Face / s3prl / fairseq2 teacher families.

One job: turn a local checkpoint path into verified tensors and frozen modules, so each family
module only holds its architecture-specific mapping and forward pass. Nothing here downloads.
"""
import argparse
import json
import os

import torch

from usad2.errors import TeacherError
from usad2.teachers.base import cache_dir


def resolve_checkpoint(card, checkpoint=None, cache=None):
    """The local checkpoint path of `card`: the explicit `checkpoint`, else `source.path`.

    `source.path` may hold `${USAD2_CACHE}` and `~` (as in the registry); a relative path is
    taken under the cache.
    Raises TeacherError naming the card and the path when nothing is there (training code
    never downloads: stage 0 fills the cache).
    """
    if checkpoint is None:
        rel = (card.source or {}).get("path")
        if not rel:
            raise TeacherError(f"teacher {card.name}: no checkpoint given and the card has no source.path")
        cache = os.fspath(cache) if cache is not None else cache_dir()
        rel = os.path.expanduser(str(rel).replace("${USAD2_CACHE}", cache).replace("$USAD2_CACHE", cache))
        checkpoint = rel if os.path.isabs(rel) else os.path.join(cache, rel)
    checkpoint = os.fspath(checkpoint)
    if not os.path.exists(checkpoint):
        raise TeacherError(f"teacher {card.name}: checkpoint {checkpoint} does not exist "
                           f"(run stage 0, fetch_teachers, or pass a local path)")
    return checkpoint


TRUST_ENV = "USAD2_TRUSTED_CHECKPOINTS"


def trusted_checkpoints():
    """The real paths listed in $USAD2_TRUSTED_CHECKPOINTS (separated by os.pathsep)."""
    value = os.environ.get(TRUST_ENV, "")
    return {os.path.realpath(os.path.expanduser(p)) for p in value.split(os.pathsep) if p.strip()}


def is_trusted(path):
    """True when `path` (or a directory above it) is listed in $USAD2_TRUSTED_CHECKPOINTS."""
    real = os.path.realpath(os.fspath(path))
    for entry in trusted_checkpoints():
        if real == entry or real.startswith(entry.rstrip(os.sep) + os.sep):
            return True
    return False


def prove_weights_only(path, origin, allow=(argparse.Namespace,)):
    """Refuse `path` unless it loads with torch.load(weights_only=True), or the user trusts it.

    For loaders we do not own (s3prl's call torch.load(weights_only=False)): before such a
    loader sees a file, the file is read once with the restricted unpickler, which accepts only
    tensors, plain containers and the classes in `allow` (argparse.Namespace, as old s3prl and
    fairseq checkpoints hold their arguments in one). A file that passes holds no other global
    the full unpickler could call, so handing it on runs no code. A file that does not pass
    (or a directory, which cannot be proven file by file) raises TeacherError naming `origin`,
    the file and the refused global, unless its path is listed in $USAD2_TRUSTED_CHECKPOINTS.
    """
    path = os.fspath(path)
    if is_trusted(path):
        return
    hint = (f"if you trust this file, list it in ${TRUST_ENV} (paths separated by '{os.pathsep}') "
            f"to let the third-party loader unpickle it fully")
    if os.path.isdir(path):
        raise TeacherError(f"{origin}: {path} is a directory handed to a third-party loader that unpickles "
                           f"without restriction; usad2 cannot prove it safe: {hint}")
    try:
        with torch.serialization.safe_globals(list(allow)):
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError names the refused global; zip/EOF errors for broken files
        raise TeacherError(f"{origin}: {path} does not load with torch.load(weights_only=True) "
                           f"({load_failure(e)}); refused because its loader would unpickle it "
                           f"without restriction, which can run code: {hint}") from None


def load_failure(error):
    """One line saying why torch.load failed: the refused global of a weights-only load
    (torch's own message spans lines and suggests weights_only=False), else the first line."""
    cause = error
    while cause is not None and "GLOBAL" not in str(cause):  # wrapped by a third-party loader
        cause = cause.__cause__ or cause.__context__
    error = cause or error
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    refused = [line for line in lines if "GLOBAL" in line or "Unsupported operand" in line]
    line = refused[0] if refused else (lines[0] if lines else "")
    if not refused and "weights_only" in line and len(lines) > 1:
        line = lines[1]
    return f"{type(error).__name__}: {line[:300]}" if line else type(error).__name__


def read_json(path):
    """A JSON file as a dict; TeacherError naming the file when it is missing or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TeacherError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise TeacherError(f"{path}: line {e.lineno}: invalid JSON: {e.msg}") from None


def read_tensors(path):
    """All tensors of one weights file: .safetensors, or a torch pickle read with weights_only=True."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as e:  # safetensors raises its own error types
            raise TeacherError(f"{path}: unreadable safetensors file: {e}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of many kinds
        raise TeacherError(f"{path}: cannot be loaded with weights_only=True ({load_failure(e)}); only tensors "
                           f"and plain containers are read, nothing else is unpickled") from None


def read_hf_weights(model_dir):
    """The state dict of a Hugging Face `save_pretrained` dir (single or sharded, safetensors or bin)."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = os.path.join(model_dir, index_name)
        if os.path.exists(index):
            shards = sorted(set(read_json(index).get("weight_map", {}).values()))
            state = {}
            for shard in shards:
                state.update(read_tensors(os.path.join(model_dir, shard)))
            return state
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            return read_tensors(path)
    raise TeacherError(f"{model_dir}: no model.safetensors, pytorch_model.bin or shard index found")


def load_strict(module, state, origin, assign=False):
    """Load `state` into `module` with no missing or unexpected keys and equal shapes.

    Raises TeacherError naming `origin` and the first offending keys instead of torch's
    RuntimeError, so a wrong checkpoint is a user error with a readable message.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if bad:
            k = bad[0]
            parts.append(f"{len(bad)} shape mismatches (e.g. {k}: checkpoint {tuple(state[k].shape)} "
                         f"vs model {tuple(own[k].shape)})")
        raise TeacherError(f"{origin}: checkpoint does not match the architecture: " + "; ".join(parts))
    module.load_state_dict(state, strict=True, assign=assign)


def freeze(module):
    """Eval mode and no gradients: teachers are frozen experts."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def manifest_path(name):
    """Path of the committed manifest `usad2/teachers/manifests/<name>.json`."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "manifests", name + ".json")


def read_manifest(name):
    """A manifest as {"source": str, "params": {key: shape list}, ...}."""
    return read_json(manifest_path(name))


def meta_state_from_manifest(manifest):
    """Full-size tensors on the meta device with the manifest's names and shapes (no memory used)."""
    return {k: torch.empty(shape, device="meta") for k, shape in manifest["params"].items()}


class FfnCapture:
    """Forward hooks that record the output of each block's FFN module (layer_tensor: ffn).

    `modules` are the per-layer FFN output modules (e.g. Whisper's fc2); after a forward pass
    `outputs[i]` is layer i+1's FFN output. Use as a context manager so hooks never leak.
    """

    def __init__(self, modules):
        self.modules = list(modules)
        self.outputs = [None] * len(self.modules)
        self.handles = []

    def __enter__(self):
        for i, m in enumerate(self.modules):
            self.handles.append(m.register_forward_hook(self._hook(i)))
        return self

    def _hook(self, i):
        def hook(_module, _inputs, output):
            self.outputs[i] = output[0] if isinstance(output, tuple) else output
        return hook

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []


def conv_chunks(num_samples, hop, receptive, max_frames):
    """Sample spans for chunking a strided conv front end without changing its frames.

    Chunk i covers samples [i*max_frames*hop, i*max_frames*hop + max_frames*hop + receptive - hop):
    the extra `receptive - hop` samples are the overlap that lets the chunk's last frame see its
    whole receptive field, so each chunk yields exactly `max_frames` frames and the conv frames of
    the concatenation equal those of the unchunked input. Only the transformer context is cut
    at chunk borders. The last chunk takes the rest; a rest shorter than `receptive` (which
    would give no frame) is dropped, as the unchunked conv would drop it too.
    """
    step = max_frames * hop
    spans, start = [], 0
    while True:
        end = min(num_samples, start + step + receptive - hop)
        if end - start >= receptive or start == 0:
            spans.append((start, end))
        if end >= num_samples:
            return spans
        start += step


def pad_stack(seqs):
    """(T_i, D) tensors -> zero-padded (B, T_max, D) tensor and the lengths (B,)."""
    lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
    out = seqs[0].new_zeros(len(seqs), int(lengths.max()), seqs[0].shape[-1])
    for i, s in enumerate(seqs):
        out[i, :s.shape[0]] = s
    return out, lengths


def extract_each(wavs, lengths, device, one):
    """Run `one(wave) -> [(T, D) per layer]` on each unpadded utterance of a (B, N) batch.

    Families that must see every utterance alone (no attention mask, per-utterance
    normalisation) share this loop; returns the zero-padded (B, T_max, D) layers and the frame
    lengths (B,), as `Teacher._extract` does.
    """
    per_layer = None
    for b in range(wavs.shape[0]):
        outs = one(wavs[b, :int(lengths[b])].to(device, torch.float32))
        per_layer = per_layer or [[] for _ in outs]
        for i, out in enumerate(outs):
            per_layer[i].append(out)
    stacked = [pad_stack(seqs) for seqs in per_layer]
    return [padded for padded, _ in stacked], stacked[0][1]
