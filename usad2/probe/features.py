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

`model_from_spec` builds one from a command-line spec (see its docstring).

Cache: `<cache_root>/<model name>-<hash of its identity>/<data dir name>-<hash of its path>/`
(so experiments can share one cache: teachers and baselines are computed once, each student
and each corpus gets its own) holds `pooled.npz` (per layer the mean over
valid frames of every utterance, float32) and `frames.npz` (per layer the frames of the
utterances a frame-level task needs, float16, concatenated with offsets), plus a `.done` stamp
whose fingerprint covers the model's identity, the data dir's index files and the frame list,
so reruns reuse the features and any change recomputes them.
"""
import dataclasses
import hashlib
import json
import logging
import os
import re

import numpy as np
import torch

from usad2.audio.frontend import FbankConfig, compute_fbank
from usad2.audio.io import load_audio
from usad2.data.datadir import load_data_dir
from usad2.errors import CheckpointError, ConfigError
from usad2.utils.atomic import atomic_dir
from usad2.utils.precision import autocast, resolve_precision
from usad2.utils.stamp import file_digest, fingerprint, is_done, mark_done

logger = logging.getLogger(__name__)
SAMPLE_RATE = 16000
CACHE_VERSION = 1


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


def _hold_frames(frames, rate, offset, times):
    """Rows of (T, D) `frames` (at `rate`, frame 0 centred at `offset`) nearest each time in `times`."""
    if frames.shape[0] == 0:
        return np.zeros((len(times), frames.shape[1]), frames.dtype)
    index = np.clip(np.rint((times - offset) * rate), 0, frames.shape[0] - 1).astype(np.int64)
    return frames[index]


def concat_features(model, sets):
    """The FeatureSet of a ConcatProbe from its parts' FeatureSets (same data dir, same frame list)."""
    utts = sets[0].utt_ids
    pooled = [x[fs.rows(utts)] for fs in sets for x in fs.pooled]
    grid = next(i for i, p in enumerate(model.parts) if p.frame_rate == model.frame_rate)
    frames = {}
    for utt in sets[0].frames:
        count = sets[grid].frames[utt][0].shape[0]
        times = model.frame_offset + np.arange(count, dtype=np.float64) / model.frame_rate
        frames[utt] = [_hold_frames(x, fs.frame_rate, fs.frame_offset, times)
                       for fs in sets for x in fs.frames[utt]]
    return FeatureSet(list(utts), pooled, frames, model.names(), model.frame_rate, model.frame_offset,
                      list(model.groups))


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

    from usad2.distill.mapping import student_layers
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


def model_from_spec(spec, seed=0, cache=None, device="cpu", precision="fp32"):
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
    """
    probed = _model_from_spec(spec, seed, cache, device)
    resolved = resolve_precision(precision, device)
    for part in getattr(probed, "parts", [probed]):
        part.precision = resolved
    return probed


def _model_from_spec(spec, seed, cache, device):
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
        return _concat_probe(name, value[len("concat:"):], cache, device)
    if value.startswith("teacher:") or not value:
        card, _, ckpt = (value[len("teacher:"):] if value else name).partition("@")
        return _teacher_probe(name, card, ckpt or None, cache, device)
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


def _teacher_probe(name, card, checkpoint, cache, device):
    from usad2.teachers.registry import build_teacher

    teacher = build_teacher(card, cache=cache, device=device, checkpoint=checkpoint)
    return TeacherProbe(name, teacher)


def _concat_probe(name, value, cache, device):
    cards = [c.strip() for c in value.split(",") if c.strip()]
    names = [c.partition("@")[0] for c in cards]
    if len(set(names)) != len(names):
        raise ConfigError(f"--model {name}=concat:{value}: a teacher is named twice")
    parts = [_teacher_probe(n, n, c.partition("@")[2] or None, cache, device) for n, c in zip(names, cards)]
    return ConcatProbe(name, parts)


# ---- the feature cache -----------------------------------------------------------------------
@dataclasses.dataclass
class FeatureSet:
    """Features of one data dir: pooled[l] (N, D_l) and frames[utt] = [(T, D_l) per layer]."""

    utt_ids: list
    pooled: list
    frames: dict
    layer_names: list
    frame_rate: float
    frame_offset: float
    groups: list = None  # one group id per layer (ConcatProbe), else None

    def rows(self, utts):
        """Row indices of `utts` in the pooled arrays."""
        index = {u: i for i, u in enumerate(self.utt_ids)}
        return np.array([index[u] for u in utts], dtype=np.int64)


def _batches(data, utts, batch_seconds, max_batch):
    """Utterances in duration order (utt2dur when present), grouped to bound padded audio."""
    durs = data.table("utt2dur") or {}
    order = sorted(utts, key=lambda u: (durs.get(u, 0.0), u))
    batch, longest = [], 0.0
    for utt in order:
        dur = durs.get(utt, batch_seconds)
        if batch and (len(batch) >= max_batch or max(longest, dur) * (len(batch) + 1) > batch_seconds):
            yield batch
            batch, longest = [], 0.0
        batch.append(utt)
        longest = max(longest, dur)
    if batch:
        yield batch


def _load_batch(data, utts):
    waves = []
    for utt in utts:
        src = data.source(utt)
        waves.append(load_audio(src.path, SAMPLE_RATE, name=utt, allow_pipes=data.allow_pipes,
                                start=src.start if src.start else None, end=src.end))
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    padded = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        padded[i, : len(w)] = w
    return padded, lengths


def _compute(model, data, frame_utts, batch_seconds, max_batch):
    """Run the model over a data dir: pooled means for all, frames for `frame_utts`."""
    utts = data.utt_ids
    want_frames = set(frame_utts)
    pooled = {u: None for u in utts}
    frames = {}
    done = 0
    for batch in _batches(data, utts, batch_seconds, max_batch):
        wavs, lengths = _load_batch(data, batch)
        layers, frame_lengths = model.extract(wavs, lengths)
        for i, utt in enumerate(batch):
            n = int(frame_lengths[i])
            if n == 0:
                logger.warning("%s: utterance %s gives no frames; its features are zeros", model.name, utt)
            per_layer = [x[i, :n].cpu().numpy() for x in layers]
            pooled[utt] = [f.mean(axis=0) if n else np.zeros(f.shape[-1], np.float32) for f in per_layer]
            if utt in want_frames:
                frames[utt] = [f.astype(np.float16) for f in per_layer]
        done += len(batch)
        logger.debug("%s: %d/%d utterances", model.name, done, len(utts))
    pooled_arrays = [np.stack([pooled[u][l] for u in utts]).astype(np.float32)
                     for l in range(len(layers))]
    return utts, pooled_arrays, frames


def _save(path, utts, pooled, frames):
    with atomic_dir(path) as tmp:
        np.savez(os.path.join(tmp, "pooled.npz"), utt_ids=np.array(utts),
                 **{f"layer{l}": x for l, x in enumerate(pooled)})
        futts = sorted(frames)
        counts = np.array([frames[u][0].shape[0] for u in futts], dtype=np.int64)
        arrays = {}
        for l in range(len(pooled)):
            parts = [frames[u][l] for u in futts]
            arrays[f"layer{l}"] = (np.concatenate(parts) if parts
                                   else np.zeros((0, pooled[l].shape[1]), np.float16))
        np.savez(os.path.join(tmp, "frames.npz"), utt_ids=np.array(futts, dtype=str), counts=counts, **arrays)


def _load(path, num_layers):
    with np.load(os.path.join(path, "pooled.npz"), allow_pickle=False) as z:
        utts = [str(u) for u in z["utt_ids"]]
        pooled = [z[f"layer{l}"] for l in range(num_layers)]
    with np.load(os.path.join(path, "frames.npz"), allow_pickle=False) as z:
        futts = [str(u) for u in z["utt_ids"]]
        bounds = np.concatenate([[0], np.cumsum(z["counts"])])
        layers = [z[f"layer{l}"] for l in range(num_layers)]
    frames = {u: [x[bounds[i]:bounds[i + 1]] for x in layers] for i, u in enumerate(futts)}
    return utts, pooled, frames


def extract_features(model, data_dir, cache_root, frame_utts=(), batch_seconds=60.0, max_batch=16,
                     force=False, fresh=None):
    """The FeatureSet of `model` on `data_dir`, computed once and then read from the cache.

    `fresh`: a set of cache paths (re)computed in this run; with `force`, a path already in it is
    read rather than computed again (a teacher probed alone and inside a ConcatProbe is
    extracted once). A ConcatProbe is assembled from its parts' FeatureSets.
    """
    if isinstance(model, ConcatProbe):
        sets = [extract_features(p, data_dir, cache_root, frame_utts, batch_seconds, max_batch, force, fresh)
                for p in model.parts]
        return concat_features(model, sets)
    data_dir = os.fspath(data_dir)
    identity = hashlib.sha256(json.dumps(model.cache_identity(), sort_keys=True, default=str).encode()).hexdigest()
    where = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:8]
    path = os.path.join(cache_root, f"{model.name}-{identity[:10]}",
                        f"{os.path.basename(os.path.normpath(data_dir))}-{where}")
    fp = fingerprint({"version": CACHE_VERSION, "model": model.cache_identity(), "frames": sorted(frame_utts),
                      "data_dir": os.path.abspath(data_dir)}, inputs=[data_dir])
    fresh = set() if fresh is None else fresh
    if (force and path not in fresh) or not is_done(path, fp):
        data = load_data_dir(data_dir)
        logger.info("features: %s on %s (%d utterances, frames of %d) -> %s", model.name, data_dir,
                    len(data), len(frame_utts), path)
        utts, pooled, frames = _compute(model, data, frame_utts, batch_seconds, max_batch)
        _save(path, utts, pooled, frames)
        mark_done(path, fp, {"model": model.name, "data_dir": data_dir})
        fresh.add(path)
    else:
        logger.info("features: %s on %s: cached in %s", model.name, data_dir, path)
    utts, pooled, frames = _load(path, model.num_layers)
    return FeatureSet(utts, pooled, frames, model.names(), model.frame_rate, model.frame_offset)
