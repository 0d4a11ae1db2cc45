"""Strict dict -> dataclass rebuilding for configs that travel inside checkpoints and exports.

An unknown key means the file comes from a newer or foreign version: silently dropping it would
build a different model than the one saved, so it is an error naming the keys.
"""
import dataclasses


def from_known_keys(cls, d, what, error=ValueError):
    """cls(**d), raising `error` naming `what` and the unknown keys when `d` has any."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"{what}: unknown keys {unknown} (known: {sorted(known)})")
    return cls(**d)
