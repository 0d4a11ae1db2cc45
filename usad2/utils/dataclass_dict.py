"""Strict dict -> dataclass checks for configs that travel inside checkpoints, exports and cards.

An unknown key means the file comes from a newer or foreign version (or a typo): silently
dropping it would build something other than what was saved, so it is an error naming the keys.
"""
import dataclasses


def check_known_keys(cls, d, what, error=ValueError):
    """Raise `error` naming `what` and the keys of `d` that are not fields of dataclass `cls`."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise error(f"{what}: unknown keys {unknown} (known: {sorted(known)})")
