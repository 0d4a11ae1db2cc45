"""RNG states of a process as weights-only-loadable values, so a checkpoint restores them exactly.

A training checkpoint holds every rank's states (torch, CUDA when present, numpy, python);
restoring them is what makes a resumed run continue the loss sequence exactly. Python's state
is a tuple of ints and numpy's a uint32 array: both are converted to lists / int64 tensors,
which `torch.load(weights_only=True)` accepts.
"""
import random

import numpy as np
import torch


def rng_state():
    """This process's RNG states as weights-only-loadable values."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": _to_lists(random.getstate()),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore the states `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def seed_everything(seed):
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
