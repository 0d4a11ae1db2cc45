"""Training of the projector + LoRA on the joint instruction set, resumable like `distill`.

Per step: `batch_size` examples of the training split (all tasks and the captions mixed), the
answer cross-entropy (usad2.llm_eval.model), AdamW on the trainable parameters only, gradient
clipping at 1.0, linear warm-up then linear decay to zero at `max_steps`, under bf16 autocast when
the resolved precision is bf16 (weights, optimizer state and checkpoints stay fp32;
docs/architecture.md#61-precision).

The example order is a function of the seed and the step alone (one seeded permutation per
epoch), so a resumed run draws the same batches. Checkpoints `<out>/checkpoints/step_XXXXXXXX.pt`
(atomic, `torch.load(weights_only=True)`) hold the trainable weights (projector, layer weights,
LoRA), optimizer, scheduler, RNG states (LoRA dropout), the step and the run's identity (model
spec, LM, tasks, options); `last.pt` is a hard link to the newest, the newest `keep_last` step
files are kept. Rerunning the same command continues from `last.pt` and the loss sequence is
the same as without the interruption; a checkpoint of a different run is refused.

Logs: `<out>/metrics.jsonl` (step, loss, lr, audio seconds seen, wall time; a resumed run appends
the steps after its checkpoint again, the last line of a step wins), TensorBoard under
`<out>/tensorboard` (`llm_eval/loss`, `llm_eval/lr`) and a tqdm bar.
"""
import json
import logging
import os
import time

import torch

from usad2.errors import CheckpointError
from usad2.models.checkpoint import read_torch_file, remove_stale_temporaries, write_checkpoint
from usad2.utils.precision import autocast
from usad2.utils.rng import rng_state, set_rng_state

logger = logging.getLogger(__name__)
CKPT_FORMAT = "usad2-llm-eval-checkpoint"


def batch_indices(num_examples, batch_size, step, seed):
    """Example indices of 0-based `step`: consecutive slices of one seeded permutation per epoch.

    Random batches, not length-sorted ones: sorting by length would save about a third of the
    padded tokens on the demo corpus but makes each batch one kind of question (captions
    together, short speech clips together), and the tiny-model test then learnt much less.
    """
    start = step * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_examples)
        perm = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        take = min(batch_size - len(out), num_examples - offset)
        out += perm[offset:offset + take].tolist()
    return out


def lr_at(step, peak, warmup, max_steps):
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, 1.0 - (step - warmup) / max(1, max_steps - warmup))


class LLMTrainer:
    """Trains one AudioLLM; `batch(indices)` gives (audio, questions, answers, audio seconds)."""

    def __init__(self, model, batch, num_examples, out, identity, max_steps, batch_size=8, lr=5e-4,
                 warmup=10, seed=0, save_every=50, keep_last=2, precision="fp32", progress=True):
        self.model, self.batch, self.n = model, batch, num_examples
        self.out, self.identity, self.max_steps = out, identity, max_steps
        self.batch_size, self.peak, self.warmup, self.seed = batch_size, lr, warmup, seed
        self.save_every, self.keep_last, self.precision, self.progress = save_every, keep_last, precision, progress
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0)
        self.step, self.audio_seconds, self.tb = 0, 0.0, None
        self.ckpt_dir = os.path.join(out, "checkpoints")

    def _resume(self):
        os.makedirs(self.ckpt_dir, exist_ok=True)
        remove_stale_temporaries(self.ckpt_dir)
        path = os.path.join(self.ckpt_dir, "last.pt")
        if not os.path.isfile(path):
            return
        ckpt = read_torch_file(path)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
            raise CheckpointError(f"{path}: not an llm_eval checkpoint")
        if ckpt["identity"] != self.identity:
            changed = sorted(k for k in set(ckpt["identity"]) | set(self.identity)
                             if ckpt["identity"].get(k) != self.identity.get(k))
            raise CheckpointError(f"{path}: this run was started with different options ({', '.join(changed)}); "
                                  "use another --out_dir or the original options")
        self.model.load_trainable_state(ckpt["trainable"], path)
        self.opt.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        self.step, self.audio_seconds = int(ckpt["step"]), float(ckpt["audio_seconds"])
        logger.info("llm_eval: resumed %s at step %d", path, self.step)

    def save(self):
        ckpt = {"format": CKPT_FORMAT, "step": self.step, "audio_seconds": self.audio_seconds,
                "identity": self.identity, "trainable": self.model.trainable_state(),
                "optimizer": self.opt.state_dict(), "rng": rng_state()}
        write_checkpoint(ckpt, self.ckpt_dir, self.keep_last, is_best=False)

    def train_step(self):
        self.model.train()
        audio, questions, answers, seconds = self.batch(batch_indices(self.n, self.batch_size, self.step, self.seed))
        lr = lr_at(self.step, self.peak, self.warmup, self.max_steps)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.precision, self.params[0].device):
            loss = self.model.loss(audio, questions, answers)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.step += 1
        self.audio_seconds += seconds
        return {"step": self.step, "loss": float(loss.detach()), "lr": lr, "audio_seconds": self.audio_seconds}

    def run(self):
        """Train to max_steps (resuming from last.pt); returns the list of this run's step metrics."""
        from tqdm import tqdm

        self._resume()
        try:
            from tensorboardX import SummaryWriter
        except ImportError:  # pragma: no cover - tensorboardX is pinned
            from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(os.path.join(self.out, "tensorboard"))
        bar = tqdm(total=self.max_steps, initial=self.step, desc="llm_eval", disable=not self.progress,
                   mininterval=10, dynamic_ncols=True)
        history, start = [], time.time()
        with open(os.path.join(self.out, "metrics.jsonl"), "a", encoding="utf-8") as log:
            while self.step < self.max_steps:
                metrics = self.train_step()
                metrics["wall_s"] = time.time() - start
                history.append(metrics)
                log.write(json.dumps(metrics) + "\n")
                log.flush()
                self.tb.add_scalar("llm_eval/loss", metrics["loss"], self.step)
                self.tb.add_scalar("llm_eval/lr", metrics["lr"], self.step)
                if self.step % self.save_every == 0 or self.step == self.max_steps:
                    self.save()
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", refresh=False)
        bar.close()
        self.tb.close()
        return history
