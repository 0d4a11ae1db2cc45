"""Optimisation pieces of the trainer: AdamW parameter groups, the LR schedule, gradient clipping.

AdamW (betas 0.9 / 0.98, eps 1e-6) with weight decay on matrices only; LambdaLR with a linear
warm-up, then linear or cosine decay to `min_lr_ratio` of the peak at `max_steps`; clipping of
the global gradient norm, summed over FSDP shards.
"""
import math

import torch

from usad2.errors import ConfigError
from usad2.utils import dist


def lr_factor(step, warmup_steps, max_steps, schedule="linear", min_ratio=0.0):
    """Multiplier of the peak LR at optimizer step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    if schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        decay = 1.0 - progress
    else:
        raise ConfigError(f"unknown --schedule {schedule!r}: linear or cosine")
    return min_ratio + (1.0 - min_ratio) * decay


def clip_gradients(params, max_norm, sharded=False):
    """Scale gradients so their global L2 norm is at most `max_norm` (0: no clipping); returns the norm.

    Under FSDP each rank holds a shard of every gradient (a DTensor): the squared norms of the
    local shards are summed over ranks. (torch 2.8's clip_grad_norm_ gave a different norm for
    FSDP2 shards on CPU/gloo than for the same unsharded gradients, which broke the equal-loss
    check; this computes it explicitly.)
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    local = [g.to_local() if hasattr(g, "to_local") else g for g in grads]
    sq = torch.stack([g.detach().double().pow(2).sum() for g in local]).sum()
    if sharded:
        sq = dist.all_reduce_sum(sq)
    norm = float(sq.sqrt())
    if max_norm and norm > max_norm:
        coef = max_norm / (norm + 1e-6)
        for g in local:
            g.mul_(coef)
    return norm


def param_groups(model, lr, weight_decay, head_lr_scale=1.0):
    """AdamW groups: weight decay on matrices only; the prediction heads at lr x head_lr_scale.

    With head_lr_scale 1 there are two groups (decay, no decay), as before the option existed, so
    older checkpoints resume; otherwise four (student/heads x decay/no decay).
    """
    groups = {}
    for name, p in model.named_parameters():
        is_head = "heads" in name.split(".")[:2]  # "heads.<key>..." or "module.heads.<key>..." (DDP)
        key = (is_head and head_lr_scale != 1.0, p.ndim >= 2)
        groups.setdefault(key, []).append(p)
    return [{"params": groups[(head, decay)], "weight_decay": weight_decay if decay else 0.0,
             "lr": lr * (head_lr_scale if head else 1.0)}
            for head in (False, True) for decay in (True, False) if (head, decay) in groups]


def build_optimizer(model, cfg):
    """(AdamW, LambdaLR) of `model` for a TrainConfig."""
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, cfg.head_lr_scale),
                                  lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(
        s, cfg.warmup_steps, cfg.max_steps, cfg.schedule, cfg.min_lr_ratio))
    return optimizer, scheduler
