"""usad2: train and evaluate universal audio encoders by multi-teacher representation distillation.

`usad2.load(path)` rebuilds an exported student encoder from its single export file.
"""
from usad2.version import __version__

__all__ = ["__version__", "load"]


def load(path, map_location="cpu"):
    """Load an exported student encoder (see `usad2.models.export`); needs no other file."""
    from usad2.models.export import load_export

    return load_export(path, map_location=map_location)
