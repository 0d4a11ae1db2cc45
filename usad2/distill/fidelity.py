"""Fidelity of the prediction heads: how well each head reproduces its teacher layer on dev.

A training checkpoint holds the student, one prediction head per (teacher, teacher layer), the
student layer each head reads, and (by default) the training targets' per-dimension mean / std
(`TargetStats`). `evaluate_checkpoint` rebuilds that `DistillModel` and `DistillTask` exactly
as the trainer does, runs the dev set through them like the trainer's dev loss (`EvalPipeline`,
offline targets of `<targets_dir>/<teacher>/<dev set>/` or the teachers run online, probability
layers as log-odds when the checkpoint was trained on them, predictions de-standardised with
`denormalise_preds`, student and teacher frames brought to one time axis by `align`) and
accumulates, per head, over every valid aligned frame:

- explained variance EV = 1 - SSE / SST, SSE = sum over frames and dimensions of (prediction -
  target)^2, SST = the same around the dev per-dimension mean (pooled over dimensions: one
  number per head). EV 1 is a perfect prediction, 0 is no better than the dev mean, below 0
  worse than it.
- cos: the mean over frames of the cosine similarity between the predicted and the target vector.

Both in ORIGINAL units (large-variance dimensions dominate) and in STANDARDISED units (each
dimension divided by its std first, so every dimension counts alike; cosines on mean-removed
vectors). Standardisation uses the checkpoint's TargetStats; a checkpoint trained with
`--target_norm none` has none, and then the statistics of the same aligned dev frames are used
(a first dev pass) and the result says so.

The same numbers are given for the MEAN PREDICTOR (every frame predicted as the training mean of
each dimension, from TargetStats; without them the dev mean, whose EV is 0 by construction), so
a reader sees which heads are no better than a constant. In standardised units the mean
predictor is the zero vector, whose cosine is 0 by convention.
"""
import dataclasses
import fractions
import logging
import os
import tempfile

import numpy as np
import torch

from usad2.distill.align import align
from usad2.distill.build import loss_scales, with_teacher_options
from usad2.distill.config import TrainConfig
from usad2.distill.target_sources import OfflineTargets, OnlineTargets, with_probability_targets
from usad2.distill.task import DistillModel, DistillTask, TargetStats, _spec, denormalise_preds
from usad2.errors import CheckpointError, ConfigError

logger = logging.getLogger("usad2")
PREDICTORS = ("student", "mean")
UNITS = ("orig", "std")


# ----------------------------------------------------------------------------- metrics
def explained_variance(sse, sst):
    """1 - SSE / SST, pooled over dimensions (NaN when the targets do not vary)."""
    sst = float(sst)
    return 1.0 - float(sse) / sst if sst > 0 else float("nan")


def frame_cosines(pred, target):
    """(N,) cosine similarity of each frame's prediction and target vector (0 for a zero vector)."""
    return torch.nn.functional.cosine_similarity(pred, target, dim=-1, eps=1e-12)


class HeadFidelity:
    """Running sums of one head over valid aligned frames (float64, per dimension where needed).

    `mean`, `std`: (D,) standardisation statistics; `baseline`: (D,) the mean predictor's output.
    """

    def __init__(self, mean, std, baseline):
        self.mean, self.std, self.baseline = (torch.as_tensor(x, dtype=torch.float64) for x in (mean, std, baseline))
        d = self.mean.shape[0]
        self.frames = 0
        self.sum, self.sumsq, self.sse = torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64), \
            torch.zeros(d, dtype=torch.float64)
        self.cos = {(p, u): 0.0 for p in PREDICTORS for u in UNITS}

    def add(self, pred, target):
        """Add (N, D) predictions and targets (original units) of N valid frames."""
        pred, target = pred.double().cpu(), target.double().cpu()
        self.frames += target.shape[0]
        self.sum += target.sum(0)
        self.sumsq += (target ** 2).sum(0)
        self.sse += ((pred - target) ** 2).sum(0)
        z = (target - self.mean) / self.std
        base = self.baseline.expand_as(target)
        for p, x in (("student", pred), ("mean", base)):
            self.cos[(p, "orig")] += float(frame_cosines(x, target).sum())
            self.cos[(p, "std")] += float(frame_cosines((x - self.mean) / self.std, z).sum())

    def result(self):
        """{predictor: {unit: {"ev": EV, "cos": mean cosine}}} over the frames added."""
        n = max(self.frames, 1)
        sst = self.sumsq - self.sum ** 2 / n
        # the constant predictor's SSE from the same sums: sum (t - b)^2 = sumsq - 2 b sum + n b^2
        sse = {"student": self.sse, "mean": self.sumsq - 2 * self.baseline * self.sum + n * self.baseline ** 2}
        w = self.std ** -2  # standardised units: every dimension divided by its std
        out = {}
        for p in PREDICTORS:
            out[p] = {"orig": {"ev": explained_variance(sse[p].sum(), sst.sum()), "cos": self.cos[(p, "orig")] / n},
                      "std": {"ev": explained_variance((sse[p] * w).sum(), (sst * w).sum()),
                              "cos": self.cos[(p, "std")] / n}}
        return out


# ----------------------------------------------------------------------------- model and targets
def teacher_specs_of(ckpt, where):
    """TeacherSpecs of the heads a checkpoint records (its `teachers`: name, frame rate, layer pairs)."""
    from usad2.teachers.registry import load_card

    cfg = TrainConfig.from_saved(ckpt["config"], where)
    dirs = cfg.teacher_cards or None
    specs = []
    for rec in ckpt.get("teachers") or []:
        card = load_card(rec["name"], dirs)
        if fractions.Fraction(rec["frame_rate"]) != card.frame_rate:
            raise ConfigError(f"{where}: teacher {rec['name']} was distilled at {rec['frame_rate']} Hz, but its "
                              f"card now says {card.frame_rate} Hz")
        specs.append(_spec(card, [tuple(p) for p in rec["pairs"]]))
    if not specs:
        raise CheckpointError(f"{where}: records no teachers")
    return with_teacher_options(specs, cfg, check_cards=False)


def build_from_checkpoint(ckpt, where, device="cpu"):
    """(DistillModel in eval mode, DistillTask) of a training checkpoint, as the trainer builds them."""
    from usad2.models.wave_encoder import Usad2Model

    cfg = TrainConfig.from_saved(ckpt["config"], where)
    student = Usad2Model(ckpt["model_config"], ckpt["fbank_config"])
    student.load_state_dict(ckpt["model"], strict=True)
    specs = teacher_specs_of(ckpt, where)
    model = DistillModel(student, specs, cfg.head_hidden)
    model.heads.load_state_dict(ckpt["heads"], strict=True)
    if ckpt.get("head_inputs") and dict(ckpt["head_inputs"]) != model.head_inputs:
        raise CheckpointError(f"{where}: recorded head inputs {ckpt['head_inputs']} differ from the layer "
                              f"pairs of its teachers {model.head_inputs}")
    stats = TargetStats(ckpt["target_stats"]) if ckpt.get("target_stats") else None
    task = DistillTask(specs, student.timing.rate, student.timing.offset, omega=cfg.omega,
                       any_weight=cfg.any_weight, tolerance=cfg.tolerance, stats=stats,
                       probability_targets=cfg.probability_targets,
                       scales=loss_scales(cfg, specs, check_cards=False))
    return model.to(device).eval(), task


def target_provider(cfg, specs, set_name, targets_dir=None, device="cpu"):
    """Dev targets as the trainer reads them: offline from `targets_dir`, else the teachers online."""
    from usad2.teachers.registry import build_teacher, load_card

    dirs = cfg.teacher_cards or None
    layers = {s.name: s.teacher_layers for s in specs}
    if targets_dir:
        provider = OfflineTargets(targets_dir, set_name, {s.name: load_card(s.name, dirs) for s in specs}, layers)
    else:
        provider = OnlineTargets({s.name: build_teacher(s.name, device=device, card_dirs=dirs) for s in specs}, layers)
    return with_probability_targets(provider, specs, cfg.probability_targets)


def subset_dev_dir(dev_dir, max_utts, tmp, seed=0):
    """`dev_dir`, or a data dir under `tmp` of a seeded random `max_utts` of its utterances."""
    from usad2.data.datadir import load_data_dir

    data = load_data_dir(dev_dir)
    if not max_utts or len(data) <= max_utts:
        return dev_dir, len(data)
    keep = sorted(np.random.default_rng(seed).choice(data.utt_ids, max_utts, replace=False).tolist())
    path = os.path.join(tmp, os.path.basename(os.path.normpath(dev_dir)))
    data.subset(keep).write(path)
    return path, max_utts


# ----------------------------------------------------------------------------- the dev pass
def aligned_heads(task, preds, pred_lengths, targets, batch):
    """Yield (key, (N, D) predictions, (N, D) targets) of every head's valid aligned frames.

    The alignment of `DistillTask.head_terms`, keeping the frames instead of their loss.
    """
    for m, j, key in task.heads:
        spec = task.specs[m]
        outputs, target_lengths = targets[spec.name]
        pred, target, _, mask = align(preds[key].float(), pred_lengths, outputs[j].float(), target_lengths,
                                      task.student_rate, spec.frame_rate, task.student_offset, spec.frame_offset,
                                      task.tolerance, spec.name, list(batch.utts), spec.span)
        yield key, pred[mask], target[mask]


def dev_statistics(accs):
    """{key: {"mean", "std"}} of the aligned dev targets a first pass summed into `accs`.

    The std floor is TargetStats's (1e-3 of the mean std), so constant dimensions stay finite.
    """
    stats = {}
    for key, acc in accs.items():
        n = max(acc.frames, 1)
        mean = acc.sum / n
        std = (acc.sumsq / n - mean ** 2).clamp(min=0).sqrt()
        stats[key] = {"mean": mean.float(), "std": std.clamp(min=1e-3 * float(std.mean()) + 1e-8).float()}
    return stats


def dev_pass(model, task, provider, pipe, accs, device="cpu", progress=True):
    """Run the dev set through the model once, adding every head's aligned frames to `accs`."""
    from tqdm import tqdm

    with torch.no_grad():
        for batch in tqdm(pipe, desc="fidelity", disable=not progress, mininterval=10, dynamic_ncols=True):
            targets = provider.get(batch, device)
            preds, lengths = model(batch.wavs.to(device), batch.lengths.to(device))
            for key, pred, target in aligned_heads(task, denormalise_preds(task, preds), lengths, targets, batch):
                accs[key].add(pred, target)
    return accs


@dataclasses.dataclass
class FidelityRun:
    """What `evaluate_checkpoint` measured: per-head results and how they were made."""

    heads: list
    utterances: int
    standardisation: str
    mean_predictor: str


def evaluate_checkpoint(ckpt, where, dev_dir, targets_dir=None, max_utts=0, batch_seconds=None, device="cpu",
                        progress=True):
    """Per-head fidelity of a training checkpoint on a dev data dir (see the module docstring)."""
    from usad2.data.pipeline import EvalPipeline
    from usad2.distill.build import import_plugins

    cfg = TrainConfig.from_saved(ckpt["config"], where)
    import_plugins(cfg.plugins)  # families of online teachers
    model, task = build_from_checkpoint(ckpt, where, device)
    set_name = os.path.basename(os.path.normpath(dev_dir))
    provider = target_provider(cfg, task.specs, set_name, targets_dir, device)
    with tempfile.TemporaryDirectory(prefix="usad2_fidelity_") as tmp:
        data_dir, utterances = subset_dev_dir(dev_dir, max_utts, tmp)
        pipe = EvalPipeline(data_dir, batch_seconds=batch_seconds or cfg.dev_batch_seconds,
                            max_seconds=cfg.dev_max_seconds)
        if task.stats is not None:
            norm, how = task.stats.stats, "the checkpoint's TargetStats (training targets)"
        else:  # a first pass for the statistics of exactly the frames measured
            logger.info("the checkpoint has no TargetStats: standardising with dev statistics (two dev passes)")
            dims = {key: task.specs[m].widths[task.specs[m].teacher_layers[j]] for m, j, key in task.heads}
            plain = {key: HeadFidelity(torch.zeros(d), torch.ones(d), torch.zeros(d)) for key, d in dims.items()}
            norm, how = dev_statistics(dev_pass(model, task, provider, pipe, plain, device, progress)), \
                "dev statistics (the checkpoint has no TargetStats)"
        baseline = task.stats.stats if task.stats is not None else norm
        accs = {key: HeadFidelity(norm[key]["mean"], norm[key]["std"], baseline[key]["mean"])
                for _, _, key in task.heads}
        dev_pass(model, task, provider, pipe, accs, device, progress)
    heads = [_head_entry(task.specs[m].name, task.specs[m].teacher_layers[j], key, model.head_inputs[key], accs[key])
             for m, j, key in task.heads]
    mean_how = ("training means (the checkpoint's TargetStats)" if task.stats is not None
                else "dev means (the checkpoint has no TargetStats), so its EV is 0 by construction")
    return FidelityRun(heads, utterances, how, mean_how)


def _head_entry(teacher, layer, key, student_layer, acc):
    return {"head": key, "teacher": teacher, "teacher_layer": layer, "student_layer": int(student_layer),
            "frames": acc.frames, "dims": int(acc.mean.shape[0]), **acc.result()}
