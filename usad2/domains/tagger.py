"""Domain taggers: a teacher card's class scores mapped to speech / audio / music posteriors.

A tagger is a small YAML file (`taggers/<name>.yaml`, or any path given to `--tagger`):

    card: yamnet          # any teacher card whose `layer` holds class scores
    layer: 7              # 1-based layer of the card: (T, C) class logits per frame
    activation: softmax   # softmax: logits -> one distribution over the C classes per frame;
                          # sigmoid: independent class probabilities, normalised per frame
    class_map: yamnet_class_map.csv  # optional: a file of the card's source the mapping must fit
    mapping: yamnet.tsv   # class -> domain file (usad2.domains.mapping), relative to the YAML

Per frame, p(d | frame) = Σ_{c in d} q_c with q the class distribution; an utterance's posterior
is the mean of its frames' posteriors (`pool`), so every frame counts the same whatever its
loudness. Why softmax for YAMNet: YAMNet's scores are sigmoid logits, but on the demo test set
the softmax reading agreed with the labels as well or better (egs/multidomain/RESULTS.md,
"Automatic domain inference") and reads as one distribution per frame without a renormalisation.
"""
import dataclasses
import os

import numpy as np
import torch
import yaml

from usad2.domains.mapping import read_mapping
from usad2.errors import ConfigError

TAGGER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "taggers")
ACTIVATIONS = ("softmax", "sigmoid")


@dataclasses.dataclass
class TaggerSpec:
    """What a tagger YAML declares (paths resolved)."""

    card: str
    layer: int
    activation: str
    mapping: str
    class_map: str = None
    where: str = "<in memory>"


def tagger_path(name_or_path):
    """A shipped tagger's YAML by name (`yamnet`), or the given path."""
    if os.path.sep in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        return name_or_path
    path = os.path.join(TAGGER_DIR, f"{name_or_path}.yaml")
    if not os.path.isfile(path):
        shipped = sorted(n[:-5] for n in os.listdir(TAGGER_DIR) if n.endswith(".yaml"))
        raise ConfigError(f"--tagger {name_or_path!r}: no such tagger (shipped: {', '.join(shipped)}; "
                          "or give the path of a tagger YAML)")
    return path


def read_tagger(name_or_path):
    """Read and check a tagger YAML (errors name the file)."""
    path = tagger_path(name_or_path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"tagger {path}: cannot read ({e})") from None
    fields = {f.name for f in dataclasses.fields(TaggerSpec)} - {"where"}
    if not isinstance(raw, dict) or set(raw) - fields or {"card", "layer", "mapping"} - set(raw):
        raise ConfigError(f"tagger {path}: expected the keys card, layer, mapping (and optionally "
                          f"activation, class_map); got {sorted(raw) if isinstance(raw, dict) else raw!r}")
    spec = TaggerSpec(where=path, **{"activation": "softmax", **raw})
    if spec.activation not in ACTIVATIONS:
        raise ConfigError(f"tagger {path}: activation {spec.activation!r} is not one of {ACTIVATIONS}")
    if not isinstance(spec.layer, int) or spec.layer < 1:
        raise ConfigError(f"tagger {path}: layer must be a 1-based integer, got {spec.layer!r}")
    spec.mapping = os.path.join(os.path.dirname(os.path.abspath(path)), spec.mapping)
    return spec


def class_distribution(scores, activation):
    """(T, C) class scores -> (T, C) non-negative rows summing to 1."""
    scores = torch.as_tensor(scores, dtype=torch.float64)
    if activation == "softmax":
        return torch.softmax(scores, dim=-1)
    probs = torch.sigmoid(scores)
    return probs / probs.sum(-1, keepdim=True).clamp(min=1e-300)


def pool(frame_posteriors):
    """(T, 3) frame posteriors -> (3,) utterance posterior: the mean over frames."""
    frame_posteriors = np.asarray(frame_posteriors, dtype=np.float64)
    if frame_posteriors.ndim != 2 or frame_posteriors.shape[0] == 0:
        raise ConfigError(f"cannot pool {frame_posteriors.shape} frame posteriors (need (T >= 1, 3))")
    return frame_posteriors.mean(axis=0)


class Tagger:
    """A teacher and a mapping: `frame_posteriors(wavs, lengths)` -> list of (T_b, 3) arrays."""

    def __init__(self, spec, cache=None, card_dirs=None, device="cpu"):
        from usad2.teachers.registry import build_teacher, load_card, source_files

        self.spec = spec
        self.mapping = read_mapping(spec.mapping)
        card = load_card(spec.card, card_dirs)
        if not 1 <= spec.layer <= card.num_layers:
            raise ConfigError(f"tagger {spec.where}: layer {spec.layer} outside the {card.name} card's "
                              f"1..{card.num_layers}")
        if card.layer_width(spec.layer) != len(self.mapping.mids):
            raise ConfigError(f"tagger {spec.where}: card {card.name} layer {spec.layer} has "
                              f"{card.layer_width(spec.layer)} classes, mapping {spec.mapping} "
                              f"{len(self.mapping.mids)}")
        if spec.class_map:
            files = source_files(card, cache)
            if spec.class_map not in files:
                raise ConfigError(f"tagger {spec.where}: card {card.name} has no file {spec.class_map!r}")
            self.mapping.check_class_map(files[spec.class_map])
        self.teacher = build_teacher(card, cache=cache, device=device)
        self.matrix = torch.from_numpy(self.mapping.matrix()).double()

    @property
    def name(self):
        return os.path.splitext(os.path.basename(self.spec.where))[0]

    def frame_posteriors(self, wavs, lengths):
        """(B, N) 16 kHz waves and (B,) lengths -> B arrays of (T_b, 3) frame posteriors."""
        (scores,), frames = self.teacher.extract(wavs, lengths, [self.spec.layer])
        out = []
        for b in range(scores.shape[0]):
            q = class_distribution(scores[b, :int(frames[b])], self.spec.activation)
            out.append((q @ self.matrix).numpy())
        return out
