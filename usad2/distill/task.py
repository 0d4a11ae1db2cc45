"""The distillation task: which student layer predicts which teacher layer, and the loss.

Pieces (docs/method.md §3 and §4):
- `TeacherSpec`: one teacher's name, domain, frame rate / offset and its (student layer, teacher
  layer) pairs: K-sparse for stage 1 (`stage1_spec`), the teacher's last layer from one student
  layer (default the last) for stage 2 (`stage2_spec`).
- `DistillModel`: the student plus one PredictionHead per (teacher, layer); this is the module
  DDP / FSDP wrap. Teachers are never inside it.
- `DistillTask.loss`: per head, the student predictions are aligned to the teacher's frame rate,
  the frame loss mean_d|ẑ - z| - log σ(cos) is weighted per utterance by the domain weight of
  that teacher, and normalised by the number of valid frames of that head over the GLOBAL batch
  (all ranks: one all-reduce of the frame counts). The total is

      L = Σ_m (1 / K_m) Σ_{k=1..K_m} Σ_{b,t} w_m(domain_b) ℓ_{m,k}(b, t) / N_{m,k}

  i.e. a teacher's K_m layers are averaged (so basic-pitch's 3 heads weigh as much as a 4-layer
  teacher's 4) and teachers are summed with their domain weights. Each rank returns its share
  times the world size, because DDP averages gradients over ranks: the gradient then equals
  the single-process gradient of the same global batch exactly (up to summation order).
- Target standardisation (`--target_norm standardize`, the default): per-dimension mean / std
  of each distilled teacher layer, computed once over `--norm_batches` training batches (summed
  over ranks) and stored in the checkpoint (`TargetStats`); the heads then predict standardised
  targets. Dev losses are always reported in ORIGINAL units (predictions de-standardised), so
  runs with and without it compare directly.

Why standardisation is the default: the demo teachers' scales differ by orders of magnitude
(speech_embedding's final embedding has an L1 of ~5 per dimension, basic-pitch's posteriors
~0.02); without it the large-scale head dominates the gradient and still ends worse than the
mean predictor, with it every head beats the mean predictor (the measurement:
egs/multidomain/RESULTS.md, "Target standardisation"). The paper does not say whether it
normalises; `--target_norm none` is the raw loss.
"""
import dataclasses
import fractions

import torch
from torch import nn

from usad2.distill.align import align
from usad2.distill.loss import bernoulli_frame_loss, frame_loss
from usad2.distill.target_sources import probability_to_logit
from usad2.distill.weighting import utterance_weights, weight_table
from usad2.errors import ConfigError
from usad2.models.heads import build_heads, head_key
from usad2.teachers.mapping import layer_pairs
from usad2.utils import dist


@dataclasses.dataclass
class TeacherSpec:
    """One teacher as the task sees it; `pairs` [(student layer, teacher layer)], `widths` {t_layer: D}."""
    name: str
    domain: str
    frame_rate: fractions.Fraction
    frame_offset: float
    pairs: list
    widths: dict
    probability_layers: tuple = ()
    span: float = None  # seconds of audio each teacher frame averages (--teacher_spans), or None
    sparse_layers: tuple = ()  # teacher layers fitted like mse posteriors (--sparse_layers)

    def keys(self):
        return [head_key(self.name, t) for _, t in self.pairs]

    @property
    def teacher_layers(self):
        return [t for _, t in self.pairs]


def _spec(card, pairs):
    return TeacherSpec(card.name, card.domain, fractions.Fraction(card.frame_rate), float(card.frame_offset),
                       pairs, {t: card.layer_width(t) for _, t in pairs}, tuple(card.probability_layers or ()))


def stage1_spec(card, num_student_layers, k=4, student_layers=None):
    """K-sparse mapping (or the card's explicit distill_layers; `student_layers` overrides the student side)."""
    return _spec(card, layer_pairs(num_student_layers, card.num_layers, k, card.distill_layers, card.name,
                                   student_layers))


def stage2_spec(card, num_student_layers, student_layer=-1):
    """The teacher's LAST layer predicted from `student_layer` (1-based; negative counts from the end)."""
    layer = student_layer if student_layer > 0 else num_student_layers + 1 + student_layer
    if not 1 <= layer <= num_student_layers:
        raise ConfigError(f"--stage2_student_layer {student_layer} is outside the student's "
                          f"{num_student_layers} layers")
    return _spec(card, [(layer, card.num_layers)])


class DistillModel(nn.Module):
    """Student + heads: forward(wavs, lengths) -> ({head key: (B, T, D)}, student frame lengths)."""

    def __init__(self, student, specs, head_hidden=None):
        super().__init__()
        self.student = student
        d_model = student.config.d_model
        shapes = {(s.name, t): s.widths[t] for s in specs for _, t in s.pairs}
        self.heads = build_heads(shapes, d_model, head_hidden)
        self.head_inputs = {head_key(s.name, t): layer for s in specs for layer, t in s.pairs}

    @property
    def uses_every_layer(self):
        """False when some student layers feed no head (DDP must then look for unused parameters)."""
        return max(self.head_inputs.values()) == self.student.config.num_layers

    def forward(self, wavs, lengths):
        feats, feat_lengths = self.student.features(wavs, lengths)  # fp32 even under autocast
        out = self.student.encoder(feats, feat_lengths)
        preds = {key: self.heads[key](out.hidden_states[layer]) for key, layer in self.head_inputs.items()}
        return preds, out.lengths


class TargetStats:
    """Per-dimension mean / std of each head's targets, accumulated over batches and ranks."""

    def __init__(self, stats=None):
        self.stats = stats or {}  # {key: {"mean": (D,), "std": (D,)}}
        self._acc = {}

    def add(self, key, target, lengths):
        """Accumulate the valid frames of a (B, T, D) target."""
        mask = torch.arange(target.shape[1], device=target.device)[None] < lengths.to(target.device)[:, None]
        frames = target[mask].double()
        acc = self._acc.setdefault(key, [0.0, 0.0, 0.0])
        acc[0] = acc[0] + frames.sum(0).cpu()
        acc[1] = acc[1] + (frames ** 2).sum(0).cpu()
        acc[2] = acc[2] + frames.shape[0]

    def finish(self, device="cpu"):
        """Reduce over ranks and fix the statistics; returns self.stats."""
        for key in sorted(self._acc):
            s, sq, n = self._acc[key]
            packed = torch.cat([s, sq, torch.tensor([float(n)], dtype=torch.float64)]).to(device)
            packed = dist.all_reduce_sum(packed).cpu()
            d = s.shape[0]
            n = packed[-1].clamp(min=1)
            mean = packed[:d] / n
            var = (packed[d:2 * d] / n - mean ** 2).clamp(min=0)
            std = var.sqrt()
            floor = 1e-3 * float(std.mean()) + 1e-8  # constant dimensions must not explode
            self.stats[key] = {"mean": mean.float(), "std": std.clamp(min=floor).float()}
        self._acc = {}
        return self.stats

    def pool_std(self, keys):
        """One scale per layer for `keys`: every dimension's std becomes the layer's RMS std.

        For sparse layers (posteriorgrams), per-dimension scaling turns a rarely active dimension
        into outliers of 50-90 standard deviations that dominate any loss; one scale per layer
        keeps each dimension's share as the teacher gives it (squared error then measures
        1 - explained variance of the layer).
        """
        for key in keys:
            if key in self.stats:
                std = self.stats[key]["std"]
                self.stats[key]["std"] = torch.full_like(std, float(std.pow(2).mean().sqrt()))
        return self.stats

    def normalise(self, key, x):
        st = self.stats[key]
        return (x - st["mean"].to(x.device)) / st["std"].to(x.device)

    def denormalise(self, key, x):
        st = self.stats[key]
        return x * st["std"].to(x.device) + st["mean"].to(x.device)

    def state_dict(self):
        return {k: {"mean": v["mean"].clone(), "std": v["std"].clone()} for k, v in self.stats.items()}


class DistillTask:
    """Loss, weighting and target normalisation for a list of TeacherSpecs."""

    def __init__(self, specs, student_rate, student_offset=0.0, omega=10.0, any_weight=1.0,
                 tolerance=2, stats=None, probability_targets="raw", scales=None):
        if not specs:
            raise ConfigError("no teachers to distil from (--teachers / --stage2_teachers are empty)")
        self.specs = specs
        self.student_rate = fractions.Fraction(student_rate)
        self.student_offset = student_offset
        self.tolerance = tolerance
        # scales: --teacher_weights, one multiplier per spec (weighting.py)
        self.weight_table = weight_table([s.domain for s in specs], omega, any_weight, scales)
        self.stats = stats  # a TargetStats or None
        self.heads = [(m, j, key) for m, s in enumerate(specs) for j, key in enumerate(s.keys())]
        # --probability_targets bce: these heads output logits of the teacher's posteriors and are
        # fitted by the Bernoulli KL (loss.bernoulli_frame_loss), never standardised
        prob_keys = {head_key(s.name, t) for s in specs for t in s.teacher_layers if t in s.probability_layers}
        self.bce_keys = prob_keys if probability_targets == "bce" else set()
        # --probability_targets mse: squared error instead of L1 (standardised, with the cosine term);
        # --sparse_layers: the same for the layers it names (the trainer pools their std per layer)
        sparse_keys = {head_key(s.name, t) for s in specs for t in s.teacher_layers if t in s.sparse_layers}
        if sparse_keys & self.bce_keys:
            raise ConfigError(f"--sparse_layers names {', '.join(sorted(sparse_keys & self.bce_keys))}, which "
                              "--probability_targets bce fits as posteriors: drop one of the two")
        self.squared_keys = (prob_keys if probability_targets == "mse" else set()) | sparse_keys

    def weights(self, domains, device="cpu"):
        """(B, M) domain weights of the batch's utterances; a domain is a label or a posterior
        (p_speech, p_audio, p_music), weighted by the expectation of the rule (weighting.py)."""
        rows = [utterance_weights(self.weight_table, d) for d in domains]
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(self.specs)).to(device)

    def head_terms(self, preds, pred_lengths, targets, batch, normalised=True):
        """Yield (m, key, per-frame loss (B, T), mask (B, T)) for every head.

        `normalised`: predictions are in standardised units (training); else in original units
        (evaluation), and the targets stay raw.
        """
        for m, j, key in self.heads:
            spec = self.specs[m]
            outputs, target_lengths = targets[spec.name]
            target = outputs[j]
            pred = preds[key].float()
            bce = key in self.bce_keys
            if bce and not normalised:  # evaluation hands posteriors (denormalise_preds)
                pred = probability_to_logit(pred, 1e-6)
            if self.stats is not None and normalised and not bce:
                target = self.stats.normalise(key, target)
            pred, target, _, mask = align(pred, pred_lengths, target, target_lengths, self.student_rate,
                                          spec.frame_rate, self.student_offset, spec.frame_offset,
                                          self.tolerance, spec.name, list(batch.utts), spec.span)
            values = (bernoulli_frame_loss(pred, target, mask) if bce
                      else frame_loss(pred, target, mask, squared=key in self.squared_keys))
            yield m, key, values, mask

    def local_sums(self, preds, pred_lengths, targets, batch, normalised=True):
        """Per head: (weighted loss sum with grad, unweighted sum, frame count) on this rank."""
        device = pred_lengths.device
        w = self.weights(batch.domains, device)
        weighted, plain, counts = [], [], []
        for m, key, values, mask in self.head_terms(preds, pred_lengths, targets, batch, normalised):
            weighted.append((values * w[:, m:m + 1]).sum())
            plain.append(values.detach().sum())
            counts.append(mask.sum().to(values.dtype))
        return weighted, torch.stack(plain), torch.stack(counts)

    def combine(self, weighted_sums, counts):
        """Σ_m (1/K_m) Σ_k sums / counts over the heads (tensors or lists of scalars)."""
        total = 0.0
        for h, (m, _, _) in enumerate(self.heads):
            total = total + weighted_sums[h] / counts[h].clamp(min=1) / len(self.specs[m].pairs)
        return total

    def loss(self, preds, pred_lengths, targets, batch, extra=None):
        """(loss to back-propagate on this rank, metrics of the global batch, all-reduced extra).

        `extra`: a 1-D float tensor the caller wants summed over ranks in the same all-reduce
        (e.g. seconds of audio and student frames).
        """
        weighted, plain, counts = self.local_sums(preds, pred_lengths, targets, batch)
        wdet = torch.stack([x.detach() for x in weighted])
        extra = torch.zeros(0) if extra is None else extra
        # float64: sample counts and sums stay exact, whatever the number of ranks
        packed = torch.cat([counts.double(), plain.double(), wdet.double(), extra.to(counts.device, torch.float64)])
        packed = dist.all_reduce_sum(packed)
        h = len(self.heads)
        g_counts, g_plain, g_weighted = packed[:h], packed[h:2 * h], packed[2 * h:3 * h]
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        loss = self.combine(weighted, g_counts.float()) * world
        metrics = {"loss": float(self.combine(g_weighted, g_counts))}
        for i, (_, _, key) in enumerate(self.heads):
            metrics[f"loss/{key}"] = float(g_plain[i] / g_counts[i].clamp(min=1))
        return loss, metrics, packed[3 * h:]


class EvalAccumulator:
    """Sums a task's weighted / unweighted head losses over dev batches (and ranks)."""

    def __init__(self, task):
        self.task = task
        h = len(task.heads)
        self.weighted = torch.zeros(h, dtype=torch.float64)
        self.plain = torch.zeros(h, dtype=torch.float64)
        self.counts = torch.zeros(h, dtype=torch.float64)

    @torch.no_grad()
    def add(self, preds, pred_lengths, targets, batch):
        """`preds` in original target units."""
        weighted, plain, counts = self.task.local_sums(preds, pred_lengths, targets, batch, normalised=False)
        self.weighted += torch.stack(weighted).double().cpu()
        self.plain += plain.double().cpu()
        self.counts += counts.double().cpu()

    def result(self, device="cpu"):
        """{"loss": dev loss, "loss/<key>": unweighted per-head mean} over all ranks."""
        packed = dist.all_reduce_sum(torch.cat([self.weighted, self.plain, self.counts]).to(device)).cpu()
        h = len(self.task.heads)
        weighted, plain, counts = packed[:h], packed[h:2 * h], packed[2 * h:]
        out = {"loss": float(self.task.combine(weighted, counts))}
        for i, (_, _, key) in enumerate(self.task.heads):
            out[f"loss/{key}"] = float(plain[i] / counts[i].clamp(min=1))
        return out


def denormalise_preds(task, preds):
    """Predictions in original units (identity without target statistics; posteriors for bce heads)."""
    out = {}
    for k, v in preds.items():
        if k in task.bce_keys:
            out[k] = torch.sigmoid(v.float())
        else:
            out[k] = v if task.stats is None else task.stats.denormalise(k, v.float())
    return out
