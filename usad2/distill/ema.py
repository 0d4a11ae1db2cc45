"""An exponential moving average of the student's and heads' weights (`--ema_decay`).

The optimizer trains the model as usual; after every step the average moves towards the new
weights: avg <- d * avg + (1 - d) * w, bias-corrected as Adam's moments are: the average after t
updates weighs the t weights seen by d^(t - s) and sums to 1, so the initial weights never enter
and the window is 1 / (1 - d) steps from the start (0.999: the last ~1000 steps). Training itself
is unchanged: with the same seed the optimizer's weights follow the run without averaging exactly
(test_ema.py). What the average changes is what the run hands on: the
dev loss, `best.pt`, the checkpoint's "model"/"heads" (so export, probe and a stage-2 `--init`
read the average) are the averaged weights; the optimizer's own weights are kept beside them for
the resume (docs/formats.md section 4).
"""
import contextlib

import torch


class WeightAverage:
    """The averaged copy (fp32) of every parameter of `model` (the unwrapped student + heads)."""

    def __init__(self, model, decay):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters()}

    def decay_at(self, updates):
        """The effective decay of update number `updates` (0-based), bias correction included:
        0 for the first (the average starts at the first trained weights), then rising to `decay`."""
        d = self.decay
        return (d - d ** (updates + 1)) / (1.0 - d ** (updates + 1))

    @torch.no_grad()
    def update(self, model):
        """Move the average towards `model`'s current weights (call after each optimizer step)."""
        weight = 1.0 - self.decay_at(self.updates)
        params = dict(model.named_parameters())
        names = list(self.shadow)
        torch._foreach_lerp_([self.shadow[n] for n in names], [params[n].detach().float() for n in names], weight)
        self.updates += 1

    def averaged_state(self, state):
        """`state` (a full state dict of the model, on CPU) with its parameters replaced by the average."""
        out = dict(state)
        for name, value in self.shadow.items():
            out[name] = value.detach().to("cpu", state[name].dtype).clone()
        return out

    def load(self, state, updates):
        """Restore the average from an averaged state dict (`averaged_state`'s output) and its update count."""
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise KeyError(f"the averaged weights lack {', '.join(missing[:5])}")
        for name, shadow in self.shadow.items():
            shadow.copy_(state[name].float())
        self.updates = int(updates)

    @contextlib.contextmanager
    def swapped_in(self, model):
        """Within the block, `model` holds the averaged weights; its own are put back afterwards."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            kept = {n: params[n].detach().clone() for n in self.shadow}
            for name, shadow in self.shadow.items():
                params[name].copy_(shadow)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, value in kept.items():
                    params[name].copy_(value)
