"""The export format (docs/formats.md#5-export): one plain dict that rebuilds the student alone.

    {"format": "usad2-export", "format_version": 1, "model_config": EncoderConfig dict,
     "fbank_config": FbankConfig dict, "state_dict": Usad2Model state dict ("encoder.*" keys),
     "usad2_version": str, "extra": optional dict of plain values}

Only tensors, str, numbers, lists and dicts: it loads with `torch.load(weights_only=True)`.
Heads and training state never enter an export; an export made from a training checkpoint
records its provenance in "extra" (`checkpoint_provenance`: training step, audio hours, the
teachers and their layer pairs) for the Hugging Face model card.

This module writes exports and loads one; the layout constants, validation and the one reader
of every model file (`read_model_file`: export, Hugging Face directory, training checkpoint,
state dict) live in `usad2.models.checkpoint`.
"""
import os

from usad2.models.checkpoint import (FORMAT, FORMAT_VERSION, checkpoint_provenance, model_from_checkpoint,
                                     read_model_file, read_torch_file)
from usad2.utils.atomic import atomic_torch_save
from usad2.version import __version__


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


def load_export(path, map_location="cpu"):
    """Rebuild the Usad2Model of an export file or Hugging Face model directory, in eval mode."""
    return read_model_file(path, map_location).require("export").build()


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
