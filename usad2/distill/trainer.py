"""The distillation trainer behind `python -m usad2.bin.distill` (stage 1, stage 2, continuation).

Driven by a `TrainConfig` (usad2.distill.config). Its pieces live beside it: the student, teacher
specs and --init heads (`build`), AdamW groups, schedule and clipping (`optim`), DDP / FSDP and
full state dicts (`parallel`), step files (`usad2.models.checkpoint`), RNG states
(`usad2.utils.rng`); this module runs the loop, evaluation, checkpointing and logging.

One process per device, launched by torchrun or srun (never spawned here; `usad2.utils.dist`).
Per step: `grad_accum` micro-batches of the training pipeline (global batches sliced per rank),
targets from the frozen teachers (online, outside the DDP wrapper) or offline ark files, the
student + heads forward under bf16 autocast when asked, the task loss normalised over all valid
frames of the global micro-batch, backward (DDP gradient sync only on the last micro-batch),
gradient clipping, AdamW, and a LambdaLR schedule (linear warm-up, then linear or cosine decay
to `min_lr_ratio` of the peak at `max_steps`).

Checkpoints (`<out>/checkpoints/step_XXXXXXXX.pt`, written atomically by rank 0, loadable with
torch.load(weights_only=True)) hold the student ("model": "encoder.*" keys, so
`usad2.models.export.export_from_checkpoint` reads them), "model_config", "fbank_config",
"heads", the head layout, target statistics, optimizer, scheduler, every rank's data-pipeline
state and RNG states (torch, CUDA, numpy, python), the step, the dev-loss history and the full
training config (plain values). `last.pt` and `best.pt` (lowest dev loss) are hard links, so
pruning to the last `keep_last` step files never removes them. With `--ema_decay`
(`usad2.distill.ema`), "model"/"heads" hold the averaged weights, "train_model"/"train_heads"/
"ema_updates" the optimizer's weights and the average's step count, and the dev loss is the
average's. Rerunning the same command resumes from the newest step file; the loss sequence then
continues exactly as without interruption (CPU, same world size: data state and RNG states are
restored).

Logs: `<out>/distill.log` (text; other ranks under `<out>/logs/`), `<out>/metrics.jsonl` (one
JSON object per step: loss, loss per teacher layer, lr, grad norm, audio hours seen, model
FLOPs, wall time, and the dev losses; a resumed run appends the steps after its checkpoint
again, the last line of a step wins), TensorBoard under `<out>/tensorboard`, and a tqdm bar on
rank 0. FLOPs are estimated as 6 x (student + head parameters) x student frames (forward +
backward of a dense model; attention's quadratic term and the fbank are left out).

Gradient accumulation: each micro-batch is normalised by its own global frame count and the
micro-batch losses are averaged (a step's frames are not known before its last micro-batch).
Under FSDP the gradients are reduced with SUM and divided by the world size (see `usad2.distill.parallel.wrap`), and
the clipping norm is summed over the shards (`clip_gradients`); the 2-process FSDP run
reproduces the single-process loss curve on CPU (test_trainer.py).
"""
import contextlib
import json
import logging
import os
import time

import torch

from usad2.distill.build import (build_student, heads_hidden, import_plugins, load_init_heads, loss_scales,
                                 teacher_specs)
from usad2.distill.config import TrainConfig
from usad2.distill.ema import WeightAverage
from usad2.distill.optim import build_optimizer, clip_gradients
from usad2.distill.parallel import full_state, load_optimizer_state, wrap
from usad2.distill.target_sources import OfflineTargets, OnlineTargets, with_probability_targets
from usad2.distill.task import DistillModel, DistillTask, EvalAccumulator, TargetStats, denormalise_preds
from usad2.errors import ConfigError
from usad2.models.checkpoint import (TRAIN_FORMAT, list_checkpoints, read_training_checkpoint,
                                     remove_stale_temporaries, write_checkpoint)
from usad2.models.wave_encoder import Usad2Model
from usad2.teachers.registry import build_teacher, load_card
from usad2.utils import dist
from usad2.utils.precision import autocast, resolve_precision
from usad2.utils.rng import rng_state, seed_everything, set_rng_state

logger = logging.getLogger("usad2")


def check_resume_config(saved, cfg, path):
    """Refuse to resume `path` (saved config dict) under options that make it another experiment."""
    changed = cfg.identity_changes(TrainConfig.from_saved(saved, path))
    if changed:
        details = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changed)
        raise ConfigError(f"{path}: this experiment was started with different options ({details}); "
                          "use a new --out_dir or the original options")


class Trainer:
    """Holds the model, optimizer, pipelines and targets of one process; `run()` trains."""

    def __init__(self, cfg, dist_env, device):
        self.cfg, self.env, self.device = cfg, dist_env, device
        self.out = cfg.out_dir
        self.ckpt_dir = os.path.join(self.out, "checkpoints")
        os.makedirs(self.ckpt_dir, exist_ok=True)
        import_plugins(cfg.plugins)
        self.step, self.dev_history, self.best = 0, [], None
        self.hours, self.flops = 0.0, 0.0
        self.precision = resolve_precision(cfg.precision, device)
        logger.info("precision: %s (asked: %s)", self.precision, cfg.precision)
        if dist_env.is_main:
            remove_stale_temporaries(self.ckpt_dir)
        resume = list_checkpoints(self.ckpt_dir)
        self.resume_path = resume[-1][1] if resume else None
        ckpt = self._read_resume()
        seed_everything(cfg.seed)  # identical initial weights on every rank
        self._build_model(ckpt)
        timing = self.student.timing
        self.task = DistillTask(self.specs, timing.rate, timing.offset,
                                omega=cfg.omega, any_weight=cfg.any_weight, tolerance=cfg.tolerance,
                                probability_targets=cfg.probability_targets,
                                scales=loss_scales(cfg, self.specs))
        self._build_targets()
        self._build_pipelines()
        if cfg.target_norm == "standardize":
            self.task.stats = TargetStats(ckpt["target_stats"]) if ckpt else self._compute_stats()
            self.task.stats.pool_std(self.task.squared_keys)  # mse: one scale per probability layer
        self._wrap()
        self._build_optimizer()
        self.ema = WeightAverage(self.raw_model, cfg.ema_decay) if cfg.ema_decay else None
        seed_everything(cfg.seed + 7919 * (dist_env.rank + 1))  # per-rank dropout streams
        if ckpt:
            self._restore(ckpt)
        self.train_iter = iter(self.train_pipe)
        self.num_params = sum(p.numel() for p in self.model.parameters())
        if dist_env.is_main:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # torch's own writer (needs the tensorboard package)
                from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(self.out, "tensorboard"))
        else:
            self.tb = None

    # -- set-up
    def _read_resume(self):
        if self.resume_path is None:
            return None
        ckpt = read_training_checkpoint(self.resume_path, why="the step files of <out>/checkpoints are resumed")
        check_resume_config(ckpt["config"], self.cfg, self.resume_path)
        logger.info("resuming from %s (step %d)", self.resume_path, ckpt["step"])
        return ckpt

    def _build_model(self, ckpt):
        cfg = self.cfg
        if ckpt:
            student = Usad2Model(ckpt["model_config"], ckpt["fbank_config"])
            init = None
        else:
            student, init = build_student(cfg)
        self.student = student
        self.specs = teacher_specs(cfg, student.config.num_layers)
        hidden = cfg.head_hidden
        if hidden is None:  # unset: the heads continue as they were (a resume, or kept stage-1 heads)
            hidden = heads_hidden(ckpt["heads"] if ckpt else (init.heads if init else None))
        model = DistillModel(student, self.specs, hidden)
        if ckpt:  # with --ema_decay, "model"/"heads" are the average and the optimizer's weights are "train_*"
            student.load_state_dict(ckpt.get("train_model", ckpt["model"]), strict=True)
            model.heads.load_state_dict(ckpt.get("train_heads", ckpt["heads"]), strict=True)
        else:
            load_init_heads(model, init, cfg, self.specs)
        self.raw_model = model.to(self.device)

    def _build_targets(self):
        cfg = self.cfg
        layers = {s.name: s.teacher_layers for s in self.specs}
        if cfg.targets_dir:
            cards = {s.name: load_card(s.name, cfg.teacher_cards or None) for s in self.specs}
            root = cfg.targets_dir
            self.train_targets = OfflineTargets(root, os.path.basename(os.path.normpath(cfg.train_dir)),
                                                cards, layers)
            self.dev_targets = (OfflineTargets(root, os.path.basename(os.path.normpath(cfg.dev_dir)),
                                               cards, layers) if cfg.dev_dir else None)
        else:
            teachers = {s.name: build_teacher(s.name, device=self.device, card_dirs=cfg.teacher_cards or None)
                        for s in self.specs}
            self.train_targets = self.dev_targets = OnlineTargets(teachers, layers, self.precision)
        mode = cfg.probability_targets
        self.train_targets = with_probability_targets(self.train_targets, self.specs, mode)
        self.dev_targets = with_probability_targets(self.dev_targets, self.specs, mode)

    def _build_pipelines(self):
        from usad2.data.pipeline import EvalPipeline, TrainPipeline

        cfg, env = self.cfg, self.env
        self.train_pipe = TrainPipeline(cfg.train_dir, batch_seconds=cfg.batch_seconds,
                                        crop_seconds=cfg.crop_seconds, seed=cfg.seed, rank=env.rank,
                                        world_size=env.world_size, use_weights=cfg.use_weights,
                                        num_workers=cfg.num_workers, domain_source=cfg.domain_source)
        self.dev_pipe = (EvalPipeline(cfg.dev_dir, batch_seconds=cfg.dev_batch_seconds,
                                      max_seconds=cfg.dev_max_seconds, rank=env.rank,
                                      world_size=env.world_size, num_workers=cfg.num_workers,
                                      domain_source=cfg.domain_source)
                         if cfg.dev_dir else None)

    def _compute_stats(self):
        """Target statistics over `norm_batches` training batches of a separate pipeline."""
        from usad2.data.pipeline import TrainPipeline

        cfg = self.cfg
        pipe = TrainPipeline(cfg.train_dir, batch_seconds=cfg.batch_seconds, crop_seconds=cfg.crop_seconds,
                             seed=cfg.seed + 1, rank=self.env.rank, world_size=self.env.world_size,
                             use_weights=cfg.use_weights, num_workers=cfg.num_workers)
        stats = TargetStats()
        for i, batch in zip(range(cfg.norm_batches), pipe):
            targets = self.train_targets.get(batch, self.device)
            for spec in self.specs:
                outputs, lengths = targets[spec.name]
                for key, out in zip(spec.keys(), outputs):
                    stats.add(key, out, lengths)
        stats.finish(self.device)
        logger.info("target statistics over %d batches: %s", cfg.norm_batches, ", ".join(
            f"{k} mean|std| {float(v['std'].mean()):.3g}" for k, v in stats.stats.items()))
        return stats

    def _wrap(self):
        self.model = wrap(self.raw_model, self.cfg.fsdp, self.device)

    def _build_optimizer(self):
        self.optimizer, self.scheduler = build_optimizer(self.model, self.cfg)

    def _restore(self, ckpt):
        load_optimizer_state(self.model, self.optimizer, ckpt["optimizer"], self.cfg.fsdp)
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.dev_history = ckpt["step"], list(ckpt["dev_history"])
        self.best = ckpt.get("best")
        self.hours, self.flops = ckpt["hours"], ckpt["flops"]
        if self.ema is not None:
            averaged = {**{f"student.{k}": v for k, v in ckpt["model"].items()},
                        **{f"heads.{k}": v for k, v in ckpt["heads"].items()}}
            self.ema.load(averaged, ckpt["ema_updates"])
        same_world = len(ckpt["rng"]) == self.env.world_size
        self.train_pipe.load_state_dict(ckpt["data"][self.env.rank if same_world else 0])
        if same_world:
            set_rng_state(ckpt["rng"][self.env.rank])
        else:
            logger.warning("%s was written by %d processes, now %d: RNG streams restart (data order is kept)",
                           self.resume_path, len(ckpt["rng"]), self.env.world_size)

    # -- one step
    def _autocast(self):
        return autocast(self.precision, self.device)

    def _micro_step(self, sync):
        batch = next(self.train_iter)
        targets = self.train_targets.get(batch, self.device)
        no_sync = (not sync and isinstance(self.model, torch.nn.parallel.DistributedDataParallel))
        with self.model.no_sync() if no_sync else contextlib.nullcontext():
            with self._autocast():
                preds, lengths = self.model(batch.wavs.to(self.device), batch.lengths.to(self.device))
            extra = torch.tensor([batch.lengths.sum().item(), lengths.sum().item()], dtype=torch.float64)
            loss, metrics, sums = self.task.loss(preds, lengths, targets, batch, extra)
            (loss / self.cfg.grad_accum).backward()
        return metrics, sums

    def train_step(self):
        """One optimizer step over `grad_accum` micro-batches; returns the step's metrics."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.cfg.grad_accum
        merged, seconds, frames = {}, 0.0, 0.0
        for micro in range(accum):
            metrics, sums = self._micro_step(micro == accum - 1)
            for k, v in metrics.items():
                merged[k] = merged.get(k, 0.0) + v / accum
            seconds, frames = seconds + float(sums[0]) / 16000.0, frames + float(sums[1])
        grad_norm = clip_gradients(self.model.parameters(), self.cfg.clip_grad,
                                   sharded=self.cfg.fsdp and dist.is_initialized())
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.raw_model)
        self.step += 1
        self.hours += seconds / 3600.0
        self.flops += 6.0 * self.num_params * frames
        merged.update(step=self.step, lr=lr, grad_norm=float(grad_norm), audio_hours=self.hours, flops=self.flops,
                      wall_time=time.time())
        if str(self.device).startswith("cuda"):
            merged["gpu_max_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        return merged

    # -- evaluation
    def evaluate(self):
        """Dev loss in original target units over the whole dev set (all ranks), of the averaged
        weights with --ema_decay."""
        averaged = self.ema.swapped_in(self.raw_model) if self.ema is not None else contextlib.nullcontext()
        with averaged:
            return self._evaluate()

    @torch.no_grad()
    def _evaluate(self):
        self.model.eval()
        acc = EvalAccumulator(self.task)
        fsdp = self.cfg.fsdp and dist.is_initialized()
        module = self.model.module if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) else self.model
        for batch in self.dev_pipe:
            if len(batch) == 0:
                if fsdp:  # every rank must join the sharded forward
                    module(torch.zeros(1, 16000, device=self.device), torch.tensor([16000]))
                continue
            targets = self.dev_targets.get(batch, self.device)
            with self._autocast():
                preds, lengths = module(batch.wavs.to(self.device), batch.lengths.to(self.device))
            acc.add(denormalise_preds(self.task, preds), lengths, targets, batch)
        return acc.result(self.device)

    # -- checkpointing
    def save(self, dev=None):
        """Write step_<step>.pt (rank 0, atomic), update last/best links, prune old step files."""
        model_state, optim_state = full_state(self.model, self.raw_model, self.optimizer, self.cfg.fsdp)
        rngs = dist.gather_objects(rng_state())
        datas = dist.gather_objects(self.train_pipe.state_dict())
        if self.env.is_main:
            is_best = dev is not None and (self.best is None or dev["loss"] < self.best["loss"])
            if is_best:
                self.best = {"step": self.step, "loss": dev["loss"]}
            train_state = model_state
            if self.ema is not None:
                model_state = self.ema.averaged_state(train_state)
            ckpt = {
                "format": TRAIN_FORMAT, "step": self.step, "config": self.cfg.to_dict(),
                "model": _part(model_state, "student."), "heads": _part(model_state, "heads."),
                "model_config": self.student.config.to_dict(), "fbank_config": self.student.fbank_config.to_dict(),
                "head_inputs": dict(self.raw_model.head_inputs),
                "teachers": [{"name": s.name, "domain": s.domain, "frame_rate": str(s.frame_rate),
                              "pairs": [list(p) for p in s.pairs]} for s in self.specs],
                "target_stats": self.task.stats.state_dict() if self.task.stats is not None else None,
                "optimizer": optim_state, "scheduler": self.scheduler.state_dict(),
                "data": datas, "rng": rngs, "dev_history": list(self.dev_history), "best": self.best,
                "hours": self.hours, "flops": self.flops,
            }
            if self.ema is not None:
                ckpt.update(train_model=_part(train_state, "student."), train_heads=_part(train_state, "heads."),
                            ema_updates=self.ema.updates)
            path = write_checkpoint(ckpt, self.ckpt_dir, self.cfg.keep_last, is_best)
            logger.info("saved %s%s", path, " (best so far)" if is_best else "")
        dist.barrier()

    # -- logging
    def log_metrics(self, metrics):
        if not self.env.is_main:
            return
        with open(os.path.join(self.out, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics, sort_keys=True) + "\n")
        for k, v in metrics.items():
            if k != "step" and isinstance(v, (int, float)):
                name = (k if "/" in k else f"train/{k}").replace(":", "_")  # TensorBoard forbids ':'
                self.tb.add_scalar(name, v, metrics["step"])

    def run(self):
        """Train to max_steps (resuming where a checkpoint left off); returns the final metrics."""
        from tqdm import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not self.env.is_main,
                   desc="distill", mininterval=10, dynamic_ncols=True)
        last, start = {}, time.time()
        while self.step < cfg.max_steps:
            metrics = self.train_step()
            dev = None
            final = self.step == cfg.max_steps
            if self.dev_pipe is not None and (self.step % cfg.dev_every == 0 or final):
                dev = self.evaluate()
                self.dev_history.append({"step": self.step, **dev})
                metrics.update({f"dev/{k}": v for k, v in dev.items()})
            self.log_metrics(metrics)
            if self.step % cfg.log_every == 0 or final or dev is not None:
                logger.info("step %d loss %.4f lr %.3g grad %.3g hours %.4f flops %.3g%s", self.step,
                            metrics["loss"], metrics["lr"], metrics["grad_norm"], self.hours, self.flops,
                            f" dev {dev['loss']:.4f}" if dev else "")
            if self.step % cfg.save_every == 0 or final:
                self.save(dev)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", refresh=False)
            last = metrics
        bar.close()
        if self.tb is not None:
            self.tb.close()
        logger.info("done: step %d in %.1f s this run; best %s", self.step, time.time() - start, self.best)
        return {"step": self.step, "last": last, "best": self.best, "dev_history": self.dev_history}


def _part(state, prefix):
    """The entries of `state` under `prefix`, without it."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def train(cfg):
    """Set up the distributed environment from torchrun/Slurm variables and train."""
    env = dist.read_env()
    device = dist.pick_device(env, cfg.device)
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    dist.init(env, device)
    try:
        return Trainer(cfg, env, device).run()
    finally:
        dist.shutdown()
