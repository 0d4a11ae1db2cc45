"""Metadata-only planning of training batches: sampling, random crops, length bucketing.

The plan is a deterministic function of (catalog, seed, options) and a small state, and does not
depend on the rank or the world size: every rank builds the same global batches and then keeps
its own slice. That gives the two guarantees the trainer relies on: the union of the ranks'
slices of step s is the single-process batch of step s, and a saved state resumes exactly.

How the stream of global batches is made:
- Epoch e draws N = len(catalog) utterance indices with `default_rng([seed, 0, e])`: a weighted
  sample with replacement (probabilities proportional to utt2weight) or a permutation. The same
  generator then draws one uniform number per draw position, which fixes that draw's random crop
  start, so crops are reproducible per (epoch, draw position) — a repeated utterance gets
  independent crops.
- Crop: a draw longer than `crop` samples keeps `crop` samples from a random start; shorter draws
  are kept whole. `crop` is never more than the batch budget, so one over-long utterance is cut
  to fit the budget alone.
- Bucketing: draws are read into a window of about `window` samples (spanning epoch boundaries:
  the stream is endless), sorted by cropped length, and cut greedily into batches whose summed
  cropped length stays within the budget. The window's last, unfilled batch is carried into the
  next window, where it opens the first batch, so every emitted batch is "full" (adding the next
  item would have exceeded the budget) and a carried item is always emitted in the next window.
  The sort direction alternates (longest first in even windows, shortest first in odd ones):
  the carry holds the extreme lengths of its window and opens the next window, which starts at
  the same extreme, so the carried batch is padded little. The batches of a window are then
  shuffled with `default_rng([seed, 1, window_index])` so lengths do not trend.
- State: epoch, next draw position, window index, the carried items and the window's batches not
  yet emitted, and the number of batches emitted. All plain ints and lists (torch.save with
  weights_only=True can hold it).

An item is a tuple (catalog index, crop start, crop length) in samples.
"""
import copy

import numpy as np

from usad2.errors import ConfigError

STATE_VERSION = 1


class Planner:
    """Endless generator of global batches (lists of items) with an exact, saveable state."""

    def __init__(self, catalog, *, budget, crop, window, seed, use_weights, sort=True):
        if budget <= 0:
            raise ConfigError(f"batch budget must be positive, got {budget} samples")
        self.catalog = catalog
        self.budget = int(budget)
        self.crop = int(min(crop, budget)) if crop else int(budget)
        self.window = max(int(window), self.budget)
        self.seed = int(seed)
        self.sort = bool(sort)
        self.probs = None
        if use_weights and catalog.weights is not None:
            self.probs = catalog.weights / catalog.weights.sum()
        self.state = {"epoch": 0, "pos": 0, "window": 0, "carry": [], "pending": [], "step": 0}
        self._draws_epoch, self._draws = None, None
        self._fingerprint = {
            "seed": self.seed, "budget": self.budget, "crop": self.crop, "window": self.window,
            "sort": self.sort, "weighted": self.probs is not None,
            "utterances": len(catalog), "catalog": catalog.digest()}

    # ---- configuration identity ------------------------------------------------------------
    def fingerprint(self):
        """What a saved state must match to be loadable into this planner."""
        return dict(self._fingerprint)

    def state_dict(self):
        """The position of the stream, with the fingerprint of the options that made it."""
        return {"version": STATE_VERSION, "fingerprint": self.fingerprint(),
                "plan": copy.deepcopy(self.state)}

    def load_state_dict(self, state):
        """Position the planner at a saved state; ConfigError when it belongs to other options."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            got = state.get("version") if isinstance(state, dict) else type(state).__name__
            raise ConfigError(f"data pipeline state: unknown format (expected version "
                              f"{STATE_VERSION}, got {got!r})")
        mine, theirs = self.fingerprint(), state.get("fingerprint", {})
        differ = [f"{k}: saved {theirs.get(k)!r}, now {v!r}" for k, v in mine.items()
                  if theirs.get(k) != v]
        if differ:
            raise ConfigError("data pipeline state does not match this data dir/options "
                              f"({self.catalog.where}): " + "; ".join(differ))
        self.state = copy.deepcopy(state["plan"])

    # ---- the stream ------------------------------------------------------------------------
    def next_batch(self):
        """The next global batch (list of items); advances the state."""
        while not self.state["pending"]:
            self._cut_window()
        batch = self.state["pending"].pop(0)
        self.state["step"] += 1
        return [tuple(item) for item in batch]

    def _epoch_draws(self, epoch):
        """(order, uniforms) of epoch `epoch`, cached for the current epoch."""
        if self._draws_epoch != epoch:
            rng = np.random.default_rng([self.seed, 0, epoch])
            n = len(self.catalog)
            if self.probs is not None:
                order = rng.choice(n, size=n, replace=True, p=self.probs)
            else:
                order = rng.permutation(n)
            self._draws_epoch, self._draws = epoch, (order, rng.random(n))
        return self._draws

    def _draw(self):
        """The next item of the stream (crossing into the next epoch when one ends)."""
        order, uniform = self._epoch_draws(self.state["epoch"])
        pos = self.state["pos"]
        index = int(order[pos])
        full = int(self.catalog.lengths[index])
        length = min(full, self.crop)
        start = int(uniform[pos] * (full - length + 1)) if full > length else 0
        start = min(start, full - length)
        self.state["pos"] += 1
        if self.state["pos"] == len(order):
            self.state["epoch"] += 1
            self.state["pos"] = 0
        return [index, start, length]

    def _cut_window(self):
        """Fill one window, cut it into batches, shuffle them into `pending`."""
        carry = self.state["carry"]
        total = sum(item[2] for item in carry)
        items = []
        while total < self.window or not items:
            item = self._draw()
            items.append(item)
            total += item[2]
        current = list(carry)
        if self.sort:  # alternate the direction: the carry (this window's extreme) goes first
            descending = self.state["window"] % 2 == 0
            items.sort(key=lambda it: it[2], reverse=descending)  # stable: ties keep draw order
            current.sort(key=lambda it: it[2], reverse=descending)
        batches, used = [], sum(item[2] for item in current)
        for item in items:
            if current and used + item[2] > self.budget:
                batches.append(current)
                current, used = [], 0
            current.append(item)
            used += item[2]
        self.state["carry"] = current
        rng = np.random.default_rng([self.seed, 1, self.state["window"]])
        self.state["window"] += 1
        self.state["pending"] = [batches[i] for i in rng.permutation(len(batches))]
