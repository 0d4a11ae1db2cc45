"""Frozen features for probing: every probed model as a list of layers, cached per data dir.

A probed model turns a 16 kHz batch into layers of (B, T, D) frames at its own frame rate:
- `StudentProbe`: a Usad2Model (an export, or a random initialisation of a preset); layers =
  the frontend output and blocks 1..L (`hidden_states`), so L + 1 layers.
- `FbankProbe`: the raw 128-bin fbank the student reads (one layer, 100 Hz): the baseline.
- `TeacherProbe`: any teacher through `Teacher.extract`, layers 1..num_layers.
- `HeadsProbe`: the student's own prediction heads of a training checkpoint; each head's
  output (its prediction of a teacher layer, at the student rate) is one layer. Comparing it
  with the student's layers and the teacher's shows whether the encoder or the loss drops
  what a teacher knows.
- `ConcatProbe` (`teachers_concat`, the topline): several teachers at once, built from their
  cached features (never extracted again; see its docstring for how they are combined).

`model_from_spec` builds one from a command-line spec (see its docstring). Their features on a
data dir are computed and cached by `usad2.probe.cache.extract_features`.
"""
import logging
import re

import torch

from usad2.audio.frontend import FbankConfig, compute_fbank
from usad2.errors import CheckpointError, ConfigError
from usad2.utils.precision import autocast, resolve_precision
from usad2.utils.stamp import file_digest

logger = logging.getLogger(__name__)
SAMPLE_RATE = 16000


class ProbedModel:
    """A frozen model seen as layers. Subclasses set the attributes and implement `_extract`."""

    name = "model"
    num_layers = 1
    frame_rate = 100.0
    frame_offset = 0.0
    layer_names = None
    groups = None  # one group id per layer when the layers come from several models (ConcatProbe)
    precision = "fp32"  # resolved compute precision (model_from_spec sets it)

    def identity(self):
        """JSON-able description that changes whenever the features would change."""
        raise NotImplementedError

    @property
    def uses_precision(self):
        """True when a bf16 precision changes this model's features (torch compute)."""
        return False

    def cache_identity(self):
        """identity() plus the precision where it changes the features (fp32 keeps the old key)."""
        ident = self.identity()
        if self.uses_precision and self.precision != "fp32":
            ident = dict(ident, precision=self.precision)
        return ident

    def extract(self, wavs, lengths):
        """(B, N) waves, (B,) lengths -> (list of num_layers (B, T, D) float tensors, (B,) frames)."""
        with torch.inference_mode():
            layers, frame_lengths = self._extract(wavs, torch.as_tensor(lengths, dtype=torch.long))
        return [x.float() for x in layers], torch.as_tensor(frame_lengths, dtype=torch.long)

    def names(self):
        return list(self.layer_names or [f"L{i + 1}" for i in range(self.num_layers)])


class StudentProbe(ProbedModel):
    """The student encoder's frontend output and block outputs."""

    def __init__(self, name, model, identity):
        self.name, self.model, self._identity = name, model.eval(), identity
        self.num_layers = model.config.num_layers + 1
        self.layer_names = ["frontend"] + [f"L{i}" for i in range(1, model.config.num_layers + 1)]
        self.frame_rate = float(model.timing.rate)
        self.frame_offset = model.timing.offset  # the centre of frame 0, as distillation aligns it

    def identity(self):
        return self._identity

    uses_precision = True

    def _extract(self, wavs, lengths):
        with autocast(self.precision, wavs.device):
            out = self.model(wavs, lengths)
        return list(out.hidden_states), out.lengths


class FbankProbe(ProbedModel):
    """The student's input features, one layer: what the probes reach with no encoder at all."""

    def __init__(self, name="fbank", config=FbankConfig()):
        self.name, self.config = name, config
        self.layer_names = ["fbank"]
        self.frame_rate = 1000.0 / config.frame_shift_ms
        self.frame_offset = config.window_samples / 2 / config.sample_rate

    def identity(self):
        return {"kind": "fbank", "config": self.config.to_dict()}

    def _extract(self, wavs, lengths):
        feats, feat_lengths = compute_fbank(wavs, lengths, self.config)
        return [feats], feat_lengths


class TeacherProbe(ProbedModel):
    """Layers 1..num_layers of a teacher (`usad2.teachers.build_teacher`)."""

    def __init__(self, name, teacher):
        self.name, self.teacher = name, teacher
        self.num_layers = teacher.num_layers
        self.layer_names = teacher.card.layer_names
        self.frame_rate = float(teacher.frame_rate)
        self.frame_offset = float(teacher.frame_offset)

    def identity(self):
        return {"kind": "teacher", "card": self.teacher.card.to_dict()}

    @property
    def uses_precision(self):
        return self.teacher.torch_compute

    def _extract(self, wavs, lengths):
        return self.teacher.extract(wavs, lengths, list(range(1, self.num_layers + 1)), precision=self.precision)


class HeadsProbe(StudentProbe):
    """Outputs of the student's prediction heads (one layer per head), from the layers they read."""

    def __init__(self, name, model, heads, head_inputs, identity):
        super().__init__(name, model, identity)
        self.heads, self.head_inputs = heads.eval(), head_inputs
        self.layer_names = list(head_inputs)
        self.num_layers = len(head_inputs)

    def _extract(self, wavs, lengths):
        with autocast(self.precision, wavs.device):
            out = self.model(wavs, lengths)
            layers = [self.heads[key](out.hidden_states[layer]) for key, layer in self.head_inputs.items()]
        return layers, out.lengths


class ConcatProbe(ProbedModel):
    """Several teachers as one model, made from each teacher's cached features (the topline).

    How the teachers, which differ in frame rate, depth and widths, are combined:
    - Layers: every layer of every teacher, named `<teacher>/<layer>`, each in its own width.
      Each teacher is a layer GROUP: the probe learns a softmax over each teacher's own layers
      (or takes each teacher's layer `--layer N`, its last when it has fewer) and concatenates
      the teachers' results, so one linear head reads all teachers at once, each through the
      same kind of layer weighting it gets when probed alone (usad2.probe.heads.LayerProbe).
    - Utterance-level tasks: each teacher's own pooled means (over its valid frames at its own
      rate), exactly the features the teacher has alone.
    - Frame-level tasks: the frame grid of the FASTEST teacher (its rate and frame offset; the
      first named one on a tie), so no teacher's fine time resolution is lost; every other
      teacher contributes, at each grid frame, its frame whose centre is nearest that frame's
      centre (sample and hold), clamped to its first / last frame.

    Features come from `extract_features` of each part, i.e. the feature cache entry the teacher
    gets when probed alone (same name, same identity): teachers are extracted once per data dir.
    """

    def __init__(self, name, parts):
        if len(parts) < 2:
            raise ConfigError(f"--model {name}: concat needs at least two teachers")
        self.name, self.parts = name, list(parts)
        self.layer_names = [f"{p.name}/{n}" for p in parts for n in p.names()]
        self.groups = [g for g, p in enumerate(parts) for _ in range(p.num_layers)]
        self.num_layers = len(self.layer_names)
        fastest = max(parts, key=lambda p: p.frame_rate)  # max keeps the first on a tie
        self.frame_rate, self.frame_offset = fastest.frame_rate, fastest.frame_offset

    def identity(self):
        return {"kind": "concat", "parts": [{"name": p.name, **p.cache_identity()} for p in self.parts]}

    def _extract(self, wavs, lengths):
        raise NotImplementedError("ConcatProbe is built from its parts' cached features (extract_features)")


# ---- building probed models from command-line specs ------------------------------------------
_HEAD_PARAM = re.compile(r"(?:heads\.)?(?P<key>[^.]+:L\d+)\.(?P<rest>\d+\.(?:weight|bias))")


def heads_from_checkpoint(ckpt, num_student_layers, where):
    """(ModuleDict of PredictionHeads, {head key: student hidden-state index}) of a training checkpoint.

    Heads are read from `ckpt["heads"]` (a state dict) or from `heads.<key>.*` entries of
    `ckpt["model"]`. The student layer each head reads is `ckpt["head_inputs"][key]` when the
    checkpoint records it (the trainer's hidden-state index per head), else the sparse rule
    (docs/method.md#31-sparse-layer-mapping) applied per teacher to its heads in layer order
    (k-th of K heads reads student layer floor(k * L_S / K)).
    """
    from torch import nn

    from usad2.teachers.mapping import student_layers
    from usad2.models.checkpoint import strip_wrappers
    from usad2.models.heads import PredictionHead, parse_head_key

    source = ckpt.get("heads")
    if source is None:
        source = {k[len("heads."):]: v for k, v in ((strip_wrappers(k), v) for k, v in ckpt["model"].items())
                  if k.startswith("heads.")}
    params = {}
    for key, value in source.items():
        m = _HEAD_PARAM.fullmatch(strip_wrappers(key))
        if m:
            params.setdefault(m["key"], {})[m["rest"]] = value
    if not params:
        raise CheckpointError(f"{where}: no prediction heads found (expected 'heads' or 'heads.<teacher>:L<k>.*' "
                              f"weights); probe heads only from a training checkpoint")
    heads = nn.ModuleDict()
    for key in sorted(params, key=lambda k: (parse_head_key(k)[0], parse_head_key(k)[1])):
        p = params[key]
        try:
            if "2.weight" in p:
                hidden, in_dim = p["0.weight"].shape
                head = PredictionHead(in_dim, p["2.weight"].shape[0], hidden)
            else:  # a linear head (--head_hidden 0)
                out_dim, in_dim = p["0.weight"].shape
                head = PredictionHead(in_dim, out_dim, 0)
            head.load_state_dict(p)
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{where}: head {key}: not a Linear-ReLU-Linear or Linear head ({e})") from None
        heads[key] = head
    recorded = ckpt.get("head_inputs") or {}
    inputs = {}
    by_teacher = {}
    for key in heads:
        by_teacher.setdefault(parse_head_key(key)[0], []).append(key)
    for keys in by_teacher.values():
        rule = student_layers(num_student_layers, len(keys))
        for key, layer in zip(keys, rule):
            inputs[key] = int(recorded.get(key, layer))
    return heads, {k: inputs[k] for k in heads}


def model_from_spec(spec, seed=0, cache=None, device="cpu", precision="fp32", card_dirs=None):
    """A ProbedModel from a `--model` spec, extracting at `precision` (fp32, bf16 or auto).

    - `fbank`: the fbank baseline.
    - `NAME=PATH`: the student in an export (or a training checkpoint's encoder) at PATH.
    - `NAME=heads:PATH`: the prediction heads of the training checkpoint PATH.
    - `random_init` or `random_init=PRESET_OR_EXPORT[@INIT_SEED]` (or `NAME=random:...`): a
      student initialised with INIT_SEED (default `seed`), of a preset (default tiny) or of the
      same config as an export file; INIT_SEED lets one probe run compare several random draws.
    - `CARD` or `NAME=teacher:CARD[@CHECKPOINT]`: a teacher card (layers 1..num_layers).
    - `NAME=concat:CARD[@CHECKPOINT],CARD,...`: those teachers at once (`ConcatProbe`; the
      recipe's `teachers_concat` topline); each part is named after its card, so it shares the
      feature cache of the same teacher probed as `CARD`.

    Cards are looked up in `card_dirs` (the commands' `--teacher_cards`; None: $USAD2_TEACHER_CARDS),
    then among the package's.
    """
    probed = _model_from_spec(spec, seed, cache, device, card_dirs)
    resolved = resolve_precision(precision, device)
    for part in getattr(probed, "parts", [probed]):
        part.precision = resolved
    return probed


def spec_card_names(spec):
    """The teacher card names a `--model` spec builds (none for students, fbank and random init)."""
    name, _, value = spec.partition("=")
    if value.startswith("concat:"):
        return [c.strip().partition("@")[0] for c in value[len("concat:"):].split(",") if c.strip()]
    if value.startswith("teacher:"):
        return [value[len("teacher:"):].partition("@")[0]]
    if not value and name.strip() not in ("fbank", "random_init"):
        return [name.strip().partition("@")[0]]
    return []


def _model_from_spec(spec, seed, cache, device, card_dirs=None):
    name, _, value = spec.partition("=")
    name = name.strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ConfigError(f"--model {spec!r}: the name must be letters, digits, _ . + -")
    if name == "fbank" and not value:
        return FbankProbe()
    if name == "random_init" or value.startswith("random:"):
        what = value.removeprefix("random:")
        init_seed = ""
        if "@" in what:  # the last '@': an export path may itself hold one
            what, _, init_seed = what.rpartition("@")
        if init_seed and not init_seed.isdigit():
            raise ConfigError(f"--model {spec!r}: the initialisation seed after '@' must be a whole number")
        return _to(_random_student(name, what or "tiny", int(init_seed) if init_seed else seed), device)
    if value.startswith("heads:"):
        return _to(_heads_probe(name, value[len("heads:"):]), device)
    if value.startswith("concat:"):
        return _concat_probe(name, value[len("concat:"):], cache, device, card_dirs)
    if value.startswith("teacher:") or not value:
        card, _, ckpt = (value[len("teacher:"):] if value else name).partition("@")
        return _teacher_probe(name, card, ckpt or None, cache, device, card_dirs)
    return _to(_student_file(name, value), device)


def _to(probed, device):
    """Move a student-based probed model to `device` (its fbank runs where the waves are)."""
    probed.model.to(device)
    if isinstance(probed, HeadsProbe):
        probed.heads.to(device)
    return probed


def _student_file(name, path):
    from usad2.models.checkpoint import model_file_digest, read_model_file

    model = read_model_file(path).require("export", "checkpoint").build()
    return StudentProbe(name, model, {"kind": "student", "sha256": model_file_digest(path)})


def _random_student(name, what, seed):
    from usad2.models.checkpoint import read_model_file
    from usad2.models.presets import PRESETS, get_preset
    from usad2.models.wave_encoder import Usad2Model

    if what in PRESETS:
        config, fbank = get_preset(what), None
    else:
        found = read_model_file(what).require("export", "checkpoint", why=(
            f"random_init needs a preset name ({', '.join(PRESETS)}) or a file with a model_config"))
        config, fbank = found.model_config, found.fbank_config
    torch.manual_seed(seed)
    model = Usad2Model(config, fbank)
    return StudentProbe(name, model, {"kind": "random_init", "config": model.config.to_dict(), "seed": seed})


def _heads_probe(name, path):
    from usad2.models.checkpoint import read_model_file

    found = read_model_file(path).require("checkpoint", why="probe heads only from a training checkpoint")
    model = found.build()
    heads, inputs = heads_from_checkpoint(found.raw, model.config.num_layers, path)
    return HeadsProbe(name, model, heads, inputs, {"kind": "heads", "sha256": file_digest(path)})


def _teacher_probe(name, card, checkpoint, cache, device, card_dirs=None):
    from usad2.teachers.registry import build_teacher

    teacher = build_teacher(card, cache=cache, device=device, checkpoint=checkpoint, card_dirs=card_dirs)
    return TeacherProbe(name, teacher)


def _concat_probe(name, value, cache, device, card_dirs=None):
    cards = [c.strip() for c in value.split(",") if c.strip()]
    names = [c.partition("@")[0] for c in cards]
    if len(set(names)) != len(names):
        raise ConfigError(f"--model {name}=concat:{value}: a teacher is named twice")
    parts = [_teacher_probe(n, n, c.partition("@")[2] or None, cache, device, card_dirs)
             for n, c in zip(names, cards)]
    return ConcatProbe(name, parts)
