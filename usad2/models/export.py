"""The export format (docs/formats.md#5-export): one plain dict that rebuilds the student alone.

    {"format": "usad2-export", "format_version": 1, "model_config": EncoderConfig dict,
     "fbank_config": FbankConfig dict, "state_dict": Usad2Model state dict ("encoder.*" keys),
     "usad2_version": str, "extra": optional dict of plain values}

Only tensors, str, numbers, lists and dicts: it loads with `torch.load(weights_only=True)`.
Heads and training state never enter an export; an export made from a training checkpoint
records its provenance in "extra" (`checkpoint_provenance`: training step, audio hours, the
teachers and their layer pairs) for the Hugging Face model card.

The same dict can live in a Hugging Face model directory (`usad2.hf`, docs/formats.md#51-hugging-face-model-directory);
`read_model_file` is the one reader of model files: it returns that dict for such a directory
and the torch object for a file (export, training checkpoint, state dict). Reading is strict: a foreign file, a newer
format_version, or missing / unexpected / mis-shaped weights raise CheckpointError naming them.
"""
import logging
import os

import torch

from usad2.errors import CheckpointError
from usad2.utils.atomic import atomic_torch_save
from usad2.version import __version__

FORMAT = "usad2-export"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model_config", "fbank_config", "state_dict")
# prefixes a training checkpoint's model state may carry around the encoder's own names
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
ENCODER_PREFIX = "encoder."

logger = logging.getLogger(__name__)


def make_export(model, extra=None):
    """The export dict of a Usad2Model (tensors copied to CPU)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "fbank_config": model.fbank_config.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "usad2_version": __version__,
        "extra": dict(extra or {}),
    }


def save_export(model, path, extra=None):
    """Write `model`'s export to `path` atomically; returns the path."""
    atomic_torch_save(make_export(model, extra), path)
    return path


def read_torch_file(path, map_location="cpu"):
    """torch.load(weights_only=True) with errors that name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling refused, truncated file, not a torch file at all
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


def read_model_file(path, map_location="cpu"):
    """Any usad2 model file: a Hugging Face model directory (read as the export dict it holds),
    else a weights-only torch file (export, training checkpoint or state dict)."""
    if os.path.isdir(os.fspath(path)):
        from usad2.hf import read_hf_dir

        return read_hf_dir(path, map_location)
    return read_torch_file(path, map_location)


def model_file_digest(path):
    """sha256 of a model file, or of a Hugging Face directory's config.json and weights."""
    import hashlib

    from usad2.utils.stamp import file_digest

    path = os.fspath(path)
    if not os.path.isdir(path):
        return file_digest(path)
    from usad2.hf import CONFIG_FILE, WEIGHTS_FILE

    h = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        h.update(f"{name}:{file_digest(os.path.join(path, name))}\n".encode())
    return h.hexdigest()


def check_export_dict(obj, where):
    """Validate the top level of an export dict; `where` names it in errors."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{where}: not a usad2 export (format {found!r}, expected {FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"{where}: usad2 export lacks the keys {', '.join(missing)}")
    version = obj["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{where}: export format_version {version!r} is newer than this usad2 "
                              f"({__version__}) reads (up to {FORMAT_VERSION}); upgrade usad2 "
                              f"(written by usad2 {obj.get('usad2_version', '?')})")


def _short(names, limit=8):
    names = sorted(names)
    more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def build_model(model_config, fbank_config, state_dict, where):
    """Usad2Model from a config dict, fbank config dict and a full state dict; strict, eval mode."""
    from usad2.models.wave_encoder import Usad2Model

    try:
        model = Usad2Model(model_config, fbank_config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: bad model/fbank config: {e}") from None
    expected = model.state_dict()
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing weights: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected weights: {_short(unexpected)}")
        raise CheckpointError(f"{where}: state dict does not match the model config ({'; '.join(parts)})")
    wrong = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if tuple(state_dict[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(f"{where}: weights with the wrong shape: {_short(wrong)}")
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def load_export(path, map_location="cpu"):
    """Rebuild the Usad2Model of an export file or Hugging Face model directory, in eval mode."""
    obj = read_model_file(path, map_location)
    check_export_dict(obj, os.fspath(path))
    return build_model(obj["model_config"], obj["fbank_config"], obj["state_dict"], os.fspath(path))


def encoder_state_dict(state_dict):
    """The encoder's weights out of a training model's state dict, as "encoder.*" keys.

    Strips DDP / torch.compile wrapper prefixes; when keys under "encoder." exist, keeps only
    those (heads and any other training-only modules are dropped); otherwise the keys are taken
    to be a bare StudentEncoder's and get the prefix. Returns (state_dict, dropped key prefixes).
    """
    clean = {}
    for key, value in state_dict.items():
        for prefix in WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        clean[key] = value
    if any(k.startswith(ENCODER_PREFIX) for k in clean):
        kept = {k: v for k, v in clean.items() if k.startswith(ENCODER_PREFIX)}
        dropped = sorted({k.split(".", 1)[0] for k in clean if not k.startswith(ENCODER_PREFIX)})
        return kept, dropped
    return {ENCODER_PREFIX + k: v for k, v in clean.items()}, []


def model_from_checkpoint(ckpt, where="checkpoint"):
    """Usad2Model from a dict holding "model_config" and "model" (a state dict), plus anything else.

    "fbank_config" is used when present (else the default front end for the config's bins).
    """
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{where}: expected a checkpoint with 'model_config' and 'model', found {keys}")
    state, dropped = encoder_state_dict(ckpt["model"])
    if dropped:
        logger.info("%s: dropping non-encoder modules %s", where, ", ".join(dropped))
    fbank = ckpt.get("fbank_config")
    if fbank is None:
        fbank = {"num_mel_bins": ckpt["model_config"].get("num_mel_bins", 128)}
    return build_model(ckpt["model_config"], fbank, state, where)


def checkpoint_provenance(ckpt):
    """What a training checkpoint says about how its student was made, as plain values.

    {"training": {"step", "audio_hours", "teachers": [{"name", "domain", "frame_rate", "pairs"}],
    "init"}} with only the fields the checkpoint has; {} for a bare {"model_config", "model"} dict.
    """
    if not isinstance(ckpt, dict):
        return {}
    training = {}
    if isinstance(ckpt.get("step"), int):
        training["step"] = ckpt["step"]
    if isinstance(ckpt.get("hours"), (int, float)):
        training["audio_hours"] = float(ckpt["hours"])
    teachers = []
    for t in ckpt.get("teachers") or []:
        if isinstance(t, dict) and "name" in t:
            teachers.append({"name": str(t["name"]), "domain": str(t.get("domain", "")),
                             "frame_rate": str(t.get("frame_rate", "")),
                             "pairs": [[int(s), int(tl)] for s, tl in t.get("pairs", [])]})
    if teachers:
        training["teachers"] = teachers
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    if isinstance(config.get("init"), str) and config["init"]:
        training["init"] = config["init"]
    return {"training": training} if training else {}


def export_from_checkpoint(ckpt, path, extra=None):
    """Write the export of a training checkpoint (dict, or a path to one); heads dropped. Returns the model.

    The checkpoint's provenance (`checkpoint_provenance`) goes into "extra", under `extra`'s keys.
    """
    where = "checkpoint"
    if isinstance(ckpt, (str, os.PathLike)):
        where = os.fspath(ckpt)
        ckpt = read_torch_file(ckpt)
    model = model_from_checkpoint(ckpt, where)
    save_export(model, path, {**checkpoint_provenance(ckpt), **(extra or {})})
    return model
