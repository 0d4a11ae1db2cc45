"""Model files on disk: what each kind holds, and `read_model_file`, the one reader of all of them.

Layouts (docs/formats.md#4-training-checkpoints-and-experiment-dirs, docs/formats.md#5-export):

- export: {"format": "usad2-export", "format_version", "model_config", "fbank_config",
  "state_dict" ("encoder.*" keys), "usad2_version", "extra"}; a Hugging Face model directory
  (`usad2.hf`) holds the same dict.
- training checkpoint: {"format": "usad2-train-checkpoint", "model" (the student's state dict),
  "model_config", "fbank_config", "heads", "config", "teachers", ...} written by the trainer; any
  dict with "model_config" and "model" (e.g. `upscale_depth` output) reads the same way. The model
  state may carry DDP / torch.compile wrapper prefixes and non-encoder modules; the encoder's part
  is taken out by `encoder_state_dict`.
- bare state dict: only tensors; the caller names the model (a preset).

`read_model_file(path)` returns a `ModelFile` whichever kind it finds, so export, upscale_depth,
model_info, the trainer's --init, the probe and fidelity all read models the same way. Reading is
strict and weights-only: a foreign file, a newer format_version, or missing / unexpected /
mis-shaped weights raise CheckpointError naming the file.

The step files of an experiment dir (`<out>/checkpoints/step_XXXXXXXX.pt`, `last.pt` and
`best.pt` hard links, pruning) are managed here too (`list_checkpoints`, `write_checkpoint`).
"""
import contextlib
import dataclasses
import glob
import logging
import os
import re
import shutil

import torch

from usad2.errors import CheckpointError
from usad2.utils.atomic import atomic_torch_save
from usad2.version import __version__

FORMAT = "usad2-export"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model_config", "fbank_config", "state_dict")
TRAIN_FORMAT = "usad2-train-checkpoint"
# prefixes a training checkpoint's model state may carry around the encoder's own names
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
ENCODER_PREFIX = "encoder."
STEP_RE = re.compile(r"^step_(\d{8})\.pt$")

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- reading files
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


def strip_wrappers(key):
    """A parameter name without DDP / torch.compile wrapper prefixes."""
    for prefix in WRAPPER_PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def encoder_state_dict(state_dict):
    """The encoder's weights out of a training model's state dict, as "encoder.*" keys.

    Strips wrapper prefixes; when keys under "encoder." exist, keeps only those (heads and any
    other training-only modules are dropped); otherwise the keys are taken to be a bare
    StudentEncoder's and get the prefix. Returns (state_dict, dropped key prefixes).
    """
    clean = {strip_wrappers(key): value for key, value in state_dict.items()}
    if any(k.startswith(ENCODER_PREFIX) for k in clean):
        kept = {k: v for k, v in clean.items() if k.startswith(ENCODER_PREFIX)}
        dropped = sorted({k.split(".", 1)[0] for k in clean if not k.startswith(ENCODER_PREFIX)})
        return kept, dropped
    return {ENCODER_PREFIX + k: v for k, v in clean.items()}, []


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
    """Usad2Model from a config dict, fbank config dict (None: the default for the config's bins)
    and a full "encoder.*" state dict; strict, eval mode."""
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


@dataclasses.dataclass
class ModelFile:
    """A model file read by `read_model_file`, the same fields whatever its kind.

    kind: "export" (a `.pt` export or a Hugging Face directory), "checkpoint" (a dict with
    "model_config" and "model": training checkpoints, up-scaled checkpoints) or "state_dict"
    (bare tensors: model_config is the named preset's, or None without one).
    state_dict: the encoder's weights as "encoder.*" keys; heads: the prediction heads' state
    (training checkpoints) or None; provenance: the export's "extra", or what a checkpoint says
    about its training (`checkpoint_provenance`); raw: the object as stored.
    """
    where: str
    kind: str
    model_config: dict
    fbank_config: dict
    state_dict: dict
    heads: dict
    provenance: dict
    raw: object

    def build(self):
        """The Usad2Model (eval mode); CheckpointError when the weights do not fit the config."""
        if self.model_config is None:
            raise CheckpointError(f"{self.where}: a bare state dict; give --preset to say which model it is")
        return build_model(self.model_config, self.fbank_config, self.state_dict, self.where)

    def require(self, *kinds, why=""):
        """self when its kind is one of `kinds`, else CheckpointError saying what was found (and `why`)."""
        if self.kind not in kinds:
            found = {"export": "an export", "checkpoint": "a checkpoint", "state_dict": "a bare state dict"}
            raise CheckpointError(f"{self.where}: not a usad2 {' or '.join(kinds)} (found {found[self.kind]}"
                                  f"{'; ' + why if why else ''})")
        return self


def _is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def model_file_of(obj, where, preset=None):
    """The ModelFile of an object already in memory (see `read_model_file`)."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        check_export_dict(obj, where)
        return ModelFile(where, "export", obj["model_config"], obj["fbank_config"], obj["state_dict"], None,
                         dict(obj.get("extra") or {}), obj)
    if isinstance(obj, dict) and "model_config" in obj and "model" in obj:
        state, dropped = encoder_state_dict(obj["model"])
        if dropped:
            logger.info("%s: dropping non-encoder modules %s", where, ", ".join(dropped))
        return ModelFile(where, "checkpoint", obj["model_config"], obj.get("fbank_config"), state, obj.get("heads"),
                         checkpoint_provenance(obj), obj)
    if _is_state_dict(obj):
        config = None
        if preset is not None:
            from usad2.models.presets import get_preset

            config = get_preset(preset).to_dict()
        return ModelFile(where, "state_dict", config, None, encoder_state_dict(obj)[0], None, {}, obj)
    found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{where}: neither a usad2 export, a checkpoint with 'model_config' and 'model', "
                          f"nor a state dict (found {found})")


def read_model_file(path, map_location="cpu", preset=None):
    """Any usad2 model file as a ModelFile: a Hugging Face model directory (the export dict it
    holds), else a weights-only torch file (export, training checkpoint or bare state dict, the
    latter with `preset` naming its model)."""
    where = os.fspath(path)
    if os.path.isdir(where):
        from usad2.hf import read_hf_dir

        obj = read_hf_dir(where, map_location)
    else:
        obj = read_torch_file(where, map_location)
    return model_file_of(obj, where, preset)


def model_from_checkpoint(ckpt, where="checkpoint"):
    """Usad2Model (eval mode) from a dict holding "model_config" and "model", plus anything else."""
    if not isinstance(ckpt, dict) or "model_config" not in ckpt or "model" not in ckpt:
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{where}: expected a checkpoint with 'model_config' and 'model', found {keys}")
    return model_file_of(ckpt, where).build()


def read_training_checkpoint(path, why="this needs its prediction heads, teachers and config"):
    """The dict of a trainer checkpoint; CheckpointError (saying `why`) for anything else."""
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != TRAIN_FORMAT or "heads" not in ckpt:
        raise CheckpointError(f"{path}: not a usad2 training checkpoint ({why}; an export has none)")
    return ckpt


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


# ----------------------------------------------------------------------------- experiment-dir step files
def list_checkpoints(ckpt_dir):
    """[(step, path)] of complete step files, oldest first."""
    out = []
    for path in glob.glob(os.path.join(ckpt_dir, "step_*.pt")):
        m = STEP_RE.match(os.path.basename(path))
        if m:
            out.append((int(m.group(1)), path))
    return sorted(out)


def _link(src, dst):
    """Atomically make `dst` a hard link of `src` (a copy where links are impossible)."""
    tmp = f"{dst}.tmp{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def remove_stale_temporaries(ckpt_dir):
    """Delete temporary files a killed save left behind (never a complete checkpoint)."""
    for path in glob.glob(os.path.join(ckpt_dir, ".step_*.tmp")) + glob.glob(os.path.join(ckpt_dir, "*.pt.tmp*")):
        logger.info("removing %s (left by an interrupted save)", path)
        os.unlink(path)


def prune_checkpoints(ckpt_dir, keep_last):
    """Delete all but the newest `keep_last` step files (last.pt and best.pt are links: they stay)."""
    for _, path in list_checkpoints(ckpt_dir)[:-keep_last] if keep_last > 0 else []:
        os.unlink(path)


def write_checkpoint(ckpt, ckpt_dir, keep_last, is_best):
    """Write `ckpt` as step_<step>.pt (atomic), point last.pt (and best.pt) at it, prune; returns the path."""
    path = os.path.join(ckpt_dir, f"step_{ckpt['step']:08d}.pt")
    atomic_torch_save(ckpt, path)
    _link(path, os.path.join(ckpt_dir, "last.pt"))
    if is_best:
        _link(path, os.path.join(ckpt_dir, "best.pt"))
    prune_checkpoints(ckpt_dir, keep_last)
    return path
