"""Probe classifiers on frozen layers, their training, and hyper-parameter selection on dev.

A probe reads a list of layers, each (N, D_l) (utterance means or single frames), standardised
per layer and dimension with training statistics (the probed models' scales differ by orders
of magnitude). It combines them as s3prl's featurizer does: a softmax-weighted sum with one
learned weight per layer (layers narrower than the widest are zero-padded), or takes one chosen
layer, then applies a linear head or a one-hidden-layer MLP. Training: Adam, cross-entropy
(binary cross-entropy for multi-label tasks), a fixed seed; every epoch is scored on dev and the
best (lr, weight decay, epoch) on the task's metric is the one whose test score is reported.
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


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Probe shape and the tiny grid searched on dev."""

    layer: object = "weighted"      # "weighted" or a 0-based layer index
    hidden: int = 0                 # 0: linear head; > 0: MLP with this hidden width
    lrs: tuple = (1e-3, 1e-2)
    weight_decays: tuple = (0.0, 1e-3)
    max_epochs: int = 40
    batch_size: int = 128
    seed: int = 0


class Standardizer:
    """Per-layer, per-dimension z-scores with statistics from the training split."""

    def __init__(self, layers):
        self.mean = [x.mean(0, keepdim=True) for x in layers]
        self.std = [x.std(0, unbiased=False, keepdim=True).clamp_min(1e-5) for x in layers]

    def __call__(self, layers):
        return [(x - m) / s for x, m, s in zip(layers, self.mean, self.std)]


class LayerProbe(nn.Module):
    """Weighted sum of layers (or one layer) -> linear or MLP classifier."""

    def __init__(self, widths, num_outputs, layer="weighted", hidden=0):
        super().__init__()
        self.widths = list(widths)
        self.layer = None if layer == "weighted" else int(layer)
        if self.layer is not None and not 0 <= self.layer < len(self.widths):
            raise ValueError(f"layer {self.layer} outside 0..{len(self.widths) - 1}")
        self.dim = max(self.widths) if self.layer is None else self.widths[self.layer]
        self.weights = nn.Parameter(torch.zeros(len(self.widths))) if self.layer is None else None
        if hidden:
            self.head = nn.Sequential(nn.Linear(self.dim, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))
        else:
            self.head = nn.Linear(self.dim, num_outputs)

    def combine(self, layers):
        if self.layer is not None:
            return layers[self.layer]
        w = torch.softmax(self.weights, 0)
        return sum(w[i] * F.pad(x, (0, self.dim - x.shape[1])) for i, x in enumerate(layers))

    def forward(self, layers):
        return self.head(self.combine(layers))

    def layer_weights(self):
        """Softmax weights per layer (one-hot for a chosen-layer probe)."""
        if self.layer is not None:
            return [1.0 if i == self.layer else 0.0 for i in range(len(self.widths))]
        return torch.softmax(self.weights.detach(), 0).tolist()


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


def train_one(train, dev, num_outputs, config, lr, weight_decay, metric, multi_label):
    """Train one probe; returns (best dev metrics, best epoch, state dict at that epoch)."""
    torch.manual_seed(config.seed)
    (xs, y), (dxs, dy) = train, dev
    widths = [x.shape[1] for x in xs]
    probe = LayerProbe(widths, num_outputs, config.layer, config.hidden)
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


def fit_probe(train, dev, test, num_outputs, config, metric, multi_label):
    """Grid over lr x weight decay (and epochs) on dev; test metrics of the selected probe.

    train/dev/test: (list of (N, D_l) float tensors, labels). Returns a dict with test and dev
    metrics, the chosen hyper-parameters and the learned layer weights.
    """
    std = Standardizer(train[0])
    train, dev, test = [(std(xs), y) for xs, y in (train, dev, test)]
    chosen = None
    for lr, wd in itertools.product(config.lrs, config.weight_decays):
        scores, epoch, state, widths = train_one(train, dev, num_outputs, config, lr, wd, metric, multi_label)
        logger.debug("lr %g wd %g: dev %s at epoch %d", lr, wd, scores, epoch)
        if chosen is None or scores[metric] > chosen[0][metric]:
            chosen = (scores, {"lr": lr, "weight_decay": wd, "epochs": epoch}, state, widths)
    scores, hparams, state, widths = chosen
    probe = LayerProbe(widths, num_outputs, config.layer, config.hidden)
    probe.load_state_dict(state)
    probe.eval()
    return {"test": evaluate(probe, test[0], test[1], multi_label), "dev": scores,
            "hparams": {**hparams, "layer": config.layer, "hidden": config.hidden},
            "layer_weights": probe.layer_weights()}
