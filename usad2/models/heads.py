"""Prediction heads: one Linear -> ReLU -> Linear per (teacher, distilled layer), or one Linear.

Method: docs/method.md#32-prediction-heads.

Heads live only during distillation; exports drop them. Keys are stable strings
"<teacher>:L<layer>" (e.g. "wavlm_base_plus:L4"): torch forbids "." in module names, so the
separator is ":" and any "." inside a teacher name becomes "_".
"""
from torch import nn


class PredictionHead(nn.Sequential):
    """Linear(in, hidden) -> ReLU -> Linear(hidden, out); hidden defaults to in_dim.

    hidden_dim 0 makes the head one Linear(in, out): the student's layer must then hold the
    teacher's layer linearly, as a linear probe reads it, instead of leaving non-linear features
    to the head (a candidate of the harmony study, egs/multidomain/RESULTS.md).
    """

    def __init__(self, in_dim, out_dim, hidden_dim=None):
        hidden_dim = in_dim if hidden_dim is None else int(hidden_dim)
        if hidden_dim < 0:
            raise ValueError(f"head hidden width must be >= 0 (0 = linear head), got {hidden_dim}")
        if hidden_dim == 0:
            super().__init__(nn.Linear(in_dim, out_dim))
        else:
            super().__init__(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
        self.in_dim, self.out_dim, self.hidden_dim = in_dim, out_dim, hidden_dim


def head_key(teacher_name, layer):
    """The ModuleDict key of the head predicting `layer` of `teacher_name`: "wavlm_base_plus:L4"."""
    return f"{teacher_name.replace('.', '_')}:L{int(layer)}"


def parse_head_key(key):
    """Inverse of head_key: "wavlm_base_plus:L4" -> ("wavlm_base_plus", 4)."""
    teacher, _, layer = key.rpartition(":L")
    if not teacher or not layer.isdigit():
        raise ValueError(f"not a head key: {key!r}")
    return teacher, int(layer)


def build_heads(spec, in_dim, hidden_dim=None):
    """nn.ModuleDict of PredictionHeads from {(teacher_name, layer): out_dim}, in sorted key order.

    in_dim is the student's d_model; hidden_dim defaults to in_dim.
    """
    heads = {}
    for (teacher, layer), out_dim in sorted(spec.items()):
        key = head_key(teacher, layer)
        if key in heads:
            raise ValueError(f"two heads map to the key {key!r}")
        heads[key] = PredictionHead(in_dim, out_dim, hidden_dim)
    return nn.ModuleDict(heads)
