"""The distillation trainer behind `python -m usad2.bin.distill` (stage 1, stage 2, continuation).

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
pruning to the last `keep_last` step files never removes them. Rerunning the same command resumes
from the newest step file; the loss sequence then continues exactly as without interruption
(CPU, same world size: data state and RNG states are restored).

Logs: `<out>/distill.log` (text; other ranks under `<out>/logs/`), `<out>/metrics.jsonl` (one
JSON object per step: loss, loss per teacher layer, lr, grad norm, audio hours seen, model
FLOPs, wall time, and the dev losses; a resumed run appends the steps after its checkpoint
again, the last line of a step wins), TensorBoard under `<out>/tensorboard`, and a tqdm bar on
rank 0. FLOPs are estimated as 6 x (student + head parameters) x student frames (forward +
backward of a dense model; attention's quadratic term and the fbank are left out).

Gradient accumulation: each micro-batch is normalised by its own global frame count and the
micro-batch losses are averaged (a step's frames are not known before its last micro-batch).
Under FSDP the gradients are reduced with SUM and divided by the world size (see `_wrap`), and
the clipping norm is summed over the shards (`clip_gradients`); the 2-process FSDP run
reproduces the single-process loss curve on CPU (test_trainer.py).
"""
import contextlib
import json
import logging
import math
import os
import random
import time

import numpy as np
import torch

from usad2.distill.config import TrainConfig
from usad2.distill.targets import OfflineTargets, OnlineTargets, with_probability_targets
from usad2.distill.task import (DistillModel, DistillTask, EvalAccumulator, TargetStats, denormalise_preds,
                                stage1_spec, stage2_spec)
from usad2.errors import CheckpointError, ConfigError
from usad2.models.checkpoint import (TRAIN_FORMAT, list_checkpoints, read_model_file, read_training_checkpoint,
                                     remove_stale_temporaries, write_checkpoint)
from usad2.models.presets import get_preset
from usad2.models.upscale import upscale
from usad2.models.wave_encoder import Usad2Model
from usad2.teachers.registry import build_teacher, load_card
from usad2.utils import dist
from usad2.utils.precision import autocast, resolve_precision

logger = logging.getLogger("usad2")

# ----------------------------------------------------------------------------- schedule, RNG
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


def rng_state():
    """This process's RNG states as weights-only-loadable values."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": _to_lists(random.getstate()),
             "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                       "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


# ----------------------------------------------------------------------------- model set-up
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


def read_init(path):
    """(model config dict, fbank config dict or None, encoder state dict, heads state or None)."""
    found = read_model_file(path).require("export", "checkpoint", why="--init needs a model config")
    return found.model_config, found.fbank_config, found.state_dict, found.heads


def build_student(cfg):
    """(Usad2Model, init heads state or None) from --preset or --init (+ --upscale_ranges)."""
    overrides = {} if cfg.dropout is None else {"dropout": cfg.dropout,
                                                       "attention_dropout": cfg.dropout}
    if not cfg.init:
        if cfg.upscale_ranges:
            raise ConfigError("--upscale_ranges needs --init (a trained model to up-scale)")
        return Usad2Model(get_preset(cfg.student, **overrides)), None
    config, fbank, state, heads = read_init(cfg.init)
    if cfg.upscale_ranges:
        config, state, sources = upscale(config, state, cfg.upscale_ranges)
        logger.info("up-scaled %s to %d layers (source layers %s)", cfg.init, len(sources), sources)
    config = dict(config, **overrides)
    student = Usad2Model(config, fbank)
    student.load_state_dict(state, strict=True)
    logger.info("initialised the student from %s", cfg.init)
    return student, heads


def teacher_specs(cfg, num_student_layers):
    """TeacherSpecs of the stage-1 (K-sparse) and stage-2 (last layer) teachers."""
    dirs = cfg.teacher_cards or None
    stage2 = [t for t in cfg.stage2_teachers or [] if t]
    stage1 = [t for t in cfg.teachers or [] if t]
    if stage2 and cfg.drop_stage1:
        if stage1:
            logger.info("stage 2 with --drop_stage1 true: not distilling from %s", ", ".join(stage1))
        stage1 = []
    for names in (stage1, stage2):
        if len(set(names)) != len(names):
            raise ConfigError(f"a teacher is listed twice: {names}")
    specs = [stage1_spec(load_card(n, dirs), num_student_layers, cfg.k) for n in stage1]
    for name in stage2:
        spec = stage2_spec(load_card(name, dirs), num_student_layers, cfg.stage2_student_layer)
        same = [s for s in specs if s.name == name]
        if same:  # kept stage-1 teacher that is also a "+" teacher: one spec with both layer sets
            same[0].pairs += [p for p in spec.pairs if p not in same[0].pairs]
            same[0].widths.update(spec.widths)
        else:
            specs.append(spec)
    return specs


def heads_hidden(heads_state):
    """The hidden width of saved prediction heads: 0 for linear heads, None when there are none."""
    if not heads_state:
        return None
    if not any(k.endswith(".2.weight") for k in heads_state):
        return 0
    return int(next(v.shape[0] for k, v in heads_state.items() if k.endswith(".0.weight")))


def load_init_heads(model, heads_state, cfg):
    """Copy heads of the init checkpoint whose key and shape match (unless dropped)."""
    if not heads_state or (cfg.stage2_teachers and cfg.drop_stage1):
        return []
    own = model.heads.state_dict()
    taken = {k: v for k, v in heads_state.items() if k in own and own[k].shape == v.shape}
    own.update(taken)
    model.heads.load_state_dict(own)
    keys = sorted({k.split(".")[0] for k in taken})
    logger.info("heads taken from the init checkpoint: %s", ", ".join(keys) or "none")
    return keys


def import_plugins(names):
    """Import modules that register extra Teacher families (`register_family`)."""
    import importlib

    for name in names or []:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--plugins: cannot import {name}: {e}") from None


# ----------------------------------------------------------------------------- checkpoints
def check_resume_config(saved, cfg, path):
    """Refuse to resume `path` (saved config dict) under options that make it another experiment."""
    changed = cfg.identity_changes(TrainConfig.from_saved(saved, path))
    if changed:
        details = "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changed)
        raise ConfigError(f"{path}: this experiment was started with different options ({details}); "
                          "use a new --out_dir or the original options")


# ----------------------------------------------------------------------------- the trainer
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
                                probability_targets=cfg.probability_targets)
        self._build_targets()
        self._build_pipelines()
        if cfg.target_norm == "standardize":
            self.task.stats = TargetStats(ckpt["target_stats"]) if ckpt else self._compute_stats()
            self.task.stats.pool_std(self.task.squared_keys)  # mse: one scale per probability layer
        self._wrap()
        self._build_optimizer()
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
            init_heads = None
        else:
            student, init_heads = build_student(cfg)
        self.student = student
        self.specs = teacher_specs(cfg, student.config.num_layers)
        hidden = cfg.head_hidden
        if hidden is None:  # unset: the heads continue as they were (a resume, or kept stage-1 heads)
            hidden = heads_hidden(ckpt["heads"] if ckpt else init_heads)
        model = DistillModel(student, self.specs, hidden)
        if ckpt:
            student.load_state_dict(ckpt["model"], strict=True)
            model.heads.load_state_dict(ckpt["heads"], strict=True)
        elif init_heads:
            load_init_heads(model, init_heads, cfg)
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
                                        num_workers=cfg.num_workers)
        self.dev_pipe = (EvalPipeline(cfg.dev_dir, batch_seconds=cfg.dev_batch_seconds,
                                      max_seconds=cfg.dev_max_seconds, rank=env.rank,
                                      world_size=env.world_size, num_workers=cfg.num_workers)
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
        model = self.raw_model
        if self.cfg.fsdp:
            from torch.distributed.fsdp import fully_shard

            if dist.is_initialized():
                for block in model.student.encoder.layers:
                    fully_shard(block)
                fully_shard(model)
                # SUM then divide by the world size: gloo's reduce-scatter ignores ReduceOp.AVG
                # (gradients came out world_size times too large on CPU), nccl is fine either way
                for module in model.modules():
                    if hasattr(module, "set_force_sum_reduction_for_comms"):
                        module.set_force_sum_reduction_for_comms(True)
            self.model = model
        elif dist.is_initialized():
            from torch.nn.parallel import DistributedDataParallel

            ids = [torch.device(self.device).index] if str(self.device).startswith("cuda") else None
            self.model = DistributedDataParallel(model, device_ids=ids,
                                                 find_unused_parameters=not model.uses_every_layer)
        else:
            self.model = model

    def _build_optimizer(self):
        cfg = self.cfg
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.lr, cfg.weight_decay,
                                                        cfg.head_lr_scale),
                                           lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(
            s, cfg.warmup_steps, cfg.max_steps, cfg.schedule, cfg.min_lr_ratio))

    def _restore(self, ckpt):
        self._load_optimizer(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.dev_history = ckpt["step"], list(ckpt["dev_history"])
        self.best = ckpt.get("best")
        self.hours, self.flops = ckpt["hours"], ckpt["flops"]
        same_world = len(ckpt["rng"]) == self.env.world_size
        self.train_pipe.load_state_dict(ckpt["data"][self.env.rank if same_world else 0])
        if same_world:
            set_rng_state(ckpt["rng"][self.env.rank])
        else:
            logger.warning("%s was written by %d processes, now %d: RNG streams restart (data order is kept)",
                           self.resume_path, len(ckpt["rng"]), self.env.world_size)

    # -- state dicts (FSDP-aware)
    def _full_state(self):
        """(model state, optimizer state), full and on CPU; a collective under FSDP."""
        if self.cfg.fsdp and dist.is_initialized():
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                                 get_optimizer_state_dict)

            opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return (get_model_state_dict(self.model, options=opts),
                    get_optimizer_state_dict(self.model, self.optimizer, options=opts))
        return ({k: v.detach().cpu() for k, v in self.raw_model.state_dict().items()}, self.optimizer.state_dict())

    def _load_optimizer(self, state):
        if self.cfg.fsdp and dist.is_initialized():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.model, self.optimizer, state,
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(state)

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
        self.step += 1
        self.hours += seconds / 3600.0
        self.flops += 6.0 * self.num_params * frames
        merged.update(step=self.step, lr=lr, grad_norm=float(grad_norm), audio_hours=self.hours, flops=self.flops,
                      wall_time=time.time())
        if str(self.device).startswith("cuda"):
            merged["gpu_max_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        return merged

    # -- evaluation
    @torch.no_grad()
    def evaluate(self):
        """Dev loss in original target units over the whole dev set (all ranks)."""
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
        model_state, optim_state = self._full_state()
        rngs = dist.gather_objects(rng_state())
        datas = dist.gather_objects(self.train_pipe.state_dict())
        if self.env.is_main:
            is_best = dev is not None and (self.best is None or dev["loss"] < self.best["loss"])
            if is_best:
                self.best = {"step": self.step, "loss": dev["loss"]}
            ckpt = {
                "format": TRAIN_FORMAT, "step": self.step, "config": self.cfg.to_dict(),
                "model": {k[len("student."):]: v for k, v in model_state.items() if k.startswith("student.")},
                "heads": {k[len("heads."):]: v for k, v in model_state.items() if k.startswith("heads.")},
                "model_config": self.student.config.to_dict(), "fbank_config": self.student.fbank_config.to_dict(),
                "head_inputs": dict(self.raw_model.head_inputs),
                "teachers": [{"name": s.name, "domain": s.domain, "frame_rate": str(s.frame_rate),
                              "pairs": [list(p) for p in s.pairs]} for s in self.specs],
                "target_stats": self.task.stats.state_dict() if self.task.stats is not None else None,
                "optimizer": optim_state, "scheduler": self.scheduler.state_dict(),
                "data": datas, "rng": rngs, "dev_history": list(self.dev_history), "best": self.best,
                "hours": self.hours, "flops": self.flops,
            }
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
