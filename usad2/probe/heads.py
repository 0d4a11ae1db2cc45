"""Probe classifiers on frozen layers, their training, and hyper-parameter selection on dev.

A probe reads a list of layers, each (N, D_l) (utterance means or single frames), standardised
per layer and dimension with training statistics (the probed models' scales differ by orders
of magnitude). It combines them as s3prl's featurizer does: a softmax-weighted sum with one
learned weight per layer (layers narrower than the widest are zero-padded), or takes one chosen
layer, then applies a linear head or a one-hidden-layer MLP. A model made of several models' layers
(`teachers_concat`, usad2.probe.features.ConcatProbe) gives each layer a group: the softmax
weighting (or the chosen layer) then applies within each group and the groups' results are
concatenated, so the probe sees every part at once. Training: Adam, cross-entropy
(binary cross-entropy for multi-label tasks), a fixed seed; every epoch is scored on dev and the
best (lr, weight decay, epoch) on the task's metric is the one whose test score is reported.

`layer="concat"` is the other common frozen-feature read-out (linear evaluation of pooled layers,
all at once): every standardised layer side by side, one linear map fitted by full-batch L-BFGS to
convergence with an L2 penalty chosen on dev from `l2s`. The fit is convex and starts from zero,
so it has no epoch or seed to select and two runs give the same score; a softmax-weighted sum
instead reads one mixture of layers of the widest layer's width, which can under-read a model
whose task information is spread over several layers (docs/method.md §6).
"""
import dataclasses
import itertools
import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from usad2.probe import metrics

logger = logging.getLogger(__name__)
NAMED_READOUTS = ("weighted", "concat")  # the values of `layer` that are not a layer index
CONCAT_L2S = (1e-4, 1e-3, 1e-2, 1e-1)
CONCAT_ITERS = 300


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Probe shape and the tiny grid searched on dev."""

    layer: object = "weighted"      # "weighted", "concat" or a 0-based layer index
    hidden: int = 0                 # 0: linear head; > 0: MLP with this hidden width
    lrs: tuple = (1e-3, 1e-2)
    weight_decays: tuple = (0.0, 1e-3)
    max_epochs: int = 40
    batch_size: int = 128
    seed: int = 0
    l2s: tuple = CONCAT_L2S         # layer="concat": L2 strengths tried (per mean example loss)
    lbfgs_iters: int = CONCAT_ITERS  # layer="concat": L-BFGS iterations at most

    def stamp_fields(self):
        """The fields that define this probe's results (the concat read-out's only when it is used),
        so that stamps written before the concat read-out existed still match."""
        fields = dict(self.__dict__)
        if self.layer != "concat":
            fields.pop("l2s")
            fields.pop("lbfgs_iters")
        return fields


class Standardizer:
    """Per-layer, per-dimension z-scores with statistics from the training split."""

    def __init__(self, layers):
        self.mean = [x.mean(0, keepdim=True) for x in layers]
        self.std = [x.std(0, unbiased=False, keepdim=True).clamp_min(1e-5) for x in layers]

    def __call__(self, layers):
        return [(x - m) / s for x, m, s in zip(layers, self.mean, self.std)]


class LayerProbe(nn.Module):
    """Weighted sum of layers (or one layer) -> linear or MLP classifier.

    `groups` (one group id per layer, or None for one group): with several groups, each group
    gets its own softmax over its layers (or its own layer `layer`, the group's last when it
    has fewer) and the groups' combinations are concatenated in order of first appearance.
    """

    def __init__(self, widths, num_outputs, layer="weighted", hidden=0, groups=None):
        super().__init__()
        self.widths = list(widths)
        self.layer = None if layer == "weighted" else int(layer)
        self.members = _group_members(groups, len(self.widths))
        longest = max(len(m) for m in self.members)
        if self.layer is not None and not 0 <= self.layer < longest:
            raise ValueError(f"layer {self.layer} outside 0..{longest - 1}")
        self.group_dims = [self.widths[self._chosen(m)] if self.layer is not None else max(self.widths[i] for i in m)
                           for m in self.members]
        self.dim = sum(self.group_dims)
        self.weights = nn.Parameter(torch.zeros(len(self.widths))) if self.layer is None else None
        if hidden:
            self.head = nn.Sequential(nn.Linear(self.dim, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))
        else:
            self.head = nn.Linear(self.dim, num_outputs)

    def _chosen(self, members):
        """The layer a chosen-layer probe takes in a group: `layer`, or the group's last one."""
        return members[min(self.layer, len(members) - 1)]

    def _combine_group(self, layers, members, dim):
        if self.layer is not None:
            return layers[self._chosen(members)]
        w = torch.softmax(self.weights[members], 0)
        return sum(w[j] * F.pad(layers[i], (0, dim - layers[i].shape[1])) for j, i in enumerate(members))

    def combine(self, layers):
        parts = [self._combine_group(layers, m, d) for m, d in zip(self.members, self.group_dims)]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def forward(self, layers):
        return self.head(self.combine(layers))

    def layer_weights(self):
        """Weight per layer: softmax within each group (one-hot per group for a chosen-layer probe)."""
        out = [0.0] * len(self.widths)
        for m in self.members:
            if self.layer is not None:
                out[self._chosen(m)] = 1.0
                continue
            for i, w in zip(m, torch.softmax(self.weights.detach()[m], 0).tolist()):
                out[i] = w
        return out


class ConcatLinearProbe(nn.Module):
    """Every layer side by side -> one linear map (the `concat` read-out)."""

    def __init__(self, widths, num_outputs):
        super().__init__()
        self.widths = list(widths)
        self.head = nn.Linear(sum(self.widths), num_outputs)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, layers):
        return self.head(torch.cat(layers, 1))

    def layer_weights(self):
        """Each layer's share of the squared weight norm: where the read-out found the task."""
        sq = [w.square().sum().item() for w in self.head.weight.detach().split(self.widths, 1)]
        total = sum(sq) or 1.0
        return [x / total for x in sq]


def _group_members(groups, num_layers):
    """[[layer indices] per group] in order of first appearance; one group of all without `groups`."""
    if groups is None:
        return [list(range(num_layers))]
    if len(groups) != num_layers:
        raise ValueError(f"{len(groups)} group ids for {num_layers} layers")
    members = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    return list(members.values())


def evaluate(probe, layers, y, multi_label):
    """All metrics of `probe` on layers / labels (int classes, or (N, C) multi-hot)."""
    with torch.no_grad():
        logits = probe(layers)
    if multi_label:
        return {"map": metrics.mean_average_precision(y.numpy(), torch.sigmoid(logits).numpy())}
    pred = logits.argmax(1).numpy()
    return {"accuracy": metrics.accuracy(y.numpy(), pred), "macro_f1": metrics.macro_f1(y.numpy(), pred)}


def _loss(logits, y, multi_label):
    return F.binary_cross_entropy_with_logits(logits, y) if multi_label else F.cross_entropy(logits, y)


def train_one(train, dev, num_outputs, config, lr, weight_decay, metric, multi_label, groups=None):
    """Train one probe; returns (best dev metrics, best epoch, state dict at that epoch, widths)."""
    torch.manual_seed(config.seed)
    (xs, y), (dxs, dy) = train, dev
    widths = [x.shape[1] for x in xs]
    probe = LayerProbe(widths, num_outputs, config.layer, config.hidden, groups)
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    best = (-np.inf, 0, None, None)
    for epoch in range(1, config.max_epochs + 1):
        probe.train()
        for idx in torch.randperm(len(y), generator=gen).split(config.batch_size):
            opt.zero_grad()
            _loss(probe([x[idx] for x in xs]), y[idx], multi_label).backward()
            opt.step()
        probe.eval()
        scores = evaluate(probe, dxs, dy, multi_label)
        if scores[metric] > best[0]:
            best = (scores[metric], epoch, scores, {k: v.clone() for k, v in probe.state_dict().items()})
    return best[2], best[1], best[3], widths


def train_concat(train, num_outputs, l2, multi_label, max_iter=CONCAT_ITERS):
    """The concat read-out fitted to convergence: (probe, L-BFGS iterations used).

    Loss: mean cross-entropy (BCE for multi-label) + l2 * squared norm of the weights (not the bias).
    """
    xs, y = train
    x = torch.cat(xs, 1)
    probe = ConcatLinearProbe([t.shape[1] for t in xs], num_outputs)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure():
        opt.zero_grad()
        loss = _loss(probe.head(x), y, multi_label) + l2 * probe.head.weight.square().sum()
        loss.backward()
        return loss
    opt.step(closure)
    return probe, opt.state[probe.head.weight].get("n_iter", 0)


def _fit_concat(train, dev, test, num_outputs, config, metric, multi_label):
    chosen = None
    for l2 in config.l2s:
        probe, iters = train_concat(train, num_outputs, l2, multi_label, config.lbfgs_iters)
        probe.eval()
        scores = evaluate(probe, dev[0], dev[1], multi_label)
        logger.debug("l2 %g: dev %s after %d L-BFGS iterations", l2, scores, iters)
        if chosen is None or scores[metric] > chosen[0][metric]:
            chosen = (scores, {"l2": l2, "iterations": iters}, probe)
    scores, hparams, probe = chosen
    return {"test": evaluate(probe, test[0], test[1], multi_label), "dev": scores,
            "hparams": {**hparams, "layer": "concat", "hidden": 0}, "layer_weights": probe.layer_weights()}


def fit_probe(train, dev, test, num_outputs, config, metric, multi_label, groups=None):
    """Grid over lr x weight decay (and epochs), or over l2 for the concat read-out, on dev; test metrics
    of the selected probe.

    train/dev/test: (list of (N, D_l) float tensors, labels); `groups`: see LayerProbe (the concat
    read-out ignores them: it reads every layer). Returns a dict with test and dev metrics, the
    chosen hyper-parameters and the learned layer weights.
    """
    std = Standardizer(train[0])
    train, dev, test = [(std(xs), y) for xs, y in (train, dev, test)]
    if config.layer == "concat":
        if config.hidden:
            raise ValueError("the concat read-out is linear (hidden 0)")
        return _fit_concat(train, dev, test, num_outputs, config, metric, multi_label)
    chosen = None
    for lr, wd in itertools.product(config.lrs, config.weight_decays):
        scores, epoch, state, widths = train_one(train, dev, num_outputs, config, lr, wd, metric, multi_label,
                                                   groups)
        logger.debug("lr %g wd %g: dev %s at epoch %d", lr, wd, scores, epoch)
        if chosen is None or scores[metric] > chosen[0][metric]:
            chosen = (scores, {"lr": lr, "weight_decay": wd, "epochs": epoch}, state, widths)
    scores, hparams, state, widths = chosen
    probe = LayerProbe(widths, num_outputs, config.layer, config.hidden, groups)
    probe.load_state_dict(state)
    probe.eval()
    return {"test": evaluate(probe, test[0], test[1], multi_label), "dev": scores,
            "hparams": {**hparams, "layer": config.layer, "hidden": config.hidden},
            "layer_weights": probe.layer_weights()}
