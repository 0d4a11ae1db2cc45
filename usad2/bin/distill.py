"""Distil a student from frozen teachers (stage 1, stage 2 "+", or continuation after up-scaling).

Launch with torchrun or srun for several processes (this command never spawns any):

    python -m usad2.bin.distill --train_data dump/raw/train_mix --dev_data dump/raw/dev_mix \\
        --teachers speech_embedding,yamnet,basic_pitch --preset tiny --out exp/tiny
    torchrun --nproc-per-node 8 -m usad2.bin.distill ... --precision bf16
    # stage 2: new heads for the last layer of the stage-2 teachers, from the stage-1 model
    python -m usad2.bin.distill ... --init exp/tiny/checkpoints/best.pt \\
        --stage2_teachers whisper_large_v3,af_whisper --out exp/tiny_plus
    # depth up-scaling, then brief stage-1 continuation
    python -m usad2.bin.distill ... --init exp/xl/checkpoints/last.pt --upscale_ranges 1-24,9-32

Rerunning the same command resumes from the newest checkpoint in <out>/checkpoints. The command
writes <out>/run.sh, which replays it exactly (through torchrun when WORLD_SIZE > 1).
"""
import os
import shlex
import sys

import yaml

from usad2.errors import ConfigError
from usad2.utils.atomic import atomic_write_text
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.precision import PRECISIONS


def _names(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def build_parser():
    p = make_parser(__doc__.splitlines()[0])
    a = p.add_argument
    a("--config", default=None, help="YAML file of option values (keys as below); the command line wins")
    a("--train_data", "--train_dir", dest="train_data", default=None,
      help="training data dir (with utt2domain, optional utt2weight); required")
    a("--dev_data", "--dev_dir", dest="dev_data", default=None,
      help="dev data dir (dev loss, best checkpoint); none: no dev loss")
    a("--teachers", type=_names, default=[], help="stage-1 teachers (card names, comma-separated), K-sparse mapping")
    a("--targets_dir", default=None, help="offline targets root (<dir>/<teacher>/<set>)")
    a("--teacher_mode", default="auto", choices=["auto", "online", "offline"],
      help="online: teachers run in the step; offline: read --targets_dir; auto: offline iff --targets_dir")
    a("--teacher_cards", default=None, help="directory of user teacher cards (overrides the package's)")
    a("--plugins", type=_names, default=[], help="Python modules to import first (they register teacher families)")
    a("--preset", "--student", dest="preset", default="tiny",
      help="student size: tiny, small, base, large, xlarge, xxlarge")
    a("--dropout", type=float, default=None, help="override the preset's dropout (and attention dropout)")
    a("--out", "--out_dir", dest="out", default=None, help="experiment directory exp/<tag>; required")
    a("--k", type=int, default=4, help="number of sparse layer pairs per teacher")
    a("--omega", type=float, default=10.0, help="domain weight ω (1 = USAD v1 uniform weights)")
    a("--any_weight", type=float, default=1.0, help="weight of teachers of domain 'any'")
    a("--tolerance", type=int, default=2, help="frame-length mismatch tolerated after alignment (student frames)")
    a("--max_steps", type=int, default=1000, help="optimizer steps")
    a("--warmup_steps", type=int, default=100, help="linear warm-up steps")
    a("--schedule", default="linear", choices=["linear", "cosine"], help="decay after warm-up")
    a("--min_lr_ratio", type=float, default=0.0, help="final LR as a fraction of the peak")
    a("--lr", type=float, default=8e-4, help="peak learning rate (paper: 8e-4 small .. 1.5e-3 large)")
    a("--weight_decay", type=float, default=0.01, help="AdamW weight decay (matrices only)")
    a("--head_lr_scale", type=float, default=1.0,
      help="learning rate of the prediction heads as a multiple of --lr (1 = the paper: one rate)")
    a("--batch_seconds", type=float, default=80.0, help="seconds of audio per global batch (all ranks)")
    a("--crop_seconds", type=float, default=10.0, help="random crop length")
    a("--use_weights", type=str2bool, default=True, help="sample by utt2weight (domain upsampling)")
    a("--dev_batch_seconds", type=float, default=80.0, help="seconds of audio per dev batch")
    a("--dev_max_seconds", type=float, default=None, help="centre-crop longer dev utterances to this")
    a("--grad_accum", type=int, default=1, help="micro-batches per optimizer step")
    a("--clip_grad", type=float, default=5.0, help="gradient norm clipping (0 = off)")
    a("--save_every", type=int, default=500, help="checkpoint every N steps (and at the end)")
    a("--keep_last", type=int, default=3, help="step checkpoints kept (best.pt and last.pt always)")
    a("--dev_every", type=int, default=500, help="dev loss every N steps (and at the end)")
    a("--log_every", type=int, default=10, help="text-log every N steps (metrics.jsonl gets every step)")
    a("--seed", type=int, default=0, help="random seed")
    a("--precision", default="auto", choices=list(PRECISIONS),
      help="bf16 = autocast of the student and heads (weights, optimizer, fbank, loss stay fp32); auto = bf16 "
      "on a CUDA device or a CPU with bf16 matrix instructions (avx512_bf16 / amx_bf16), else fp32")
    a("--fsdp", type=str2bool, default=False, help="shard the student with FSDP instead of DDP")
    a("--target_norm", default="standardize", choices=["none", "standardize"],
      help="per-dimension target standardisation (default chosen by measurement: usad2.distill.task)")
    a("--probability_targets", default="raw", choices=["logit", "raw", "bce", "mse"],
      help="teacher layers that are probabilities (card: probability_layers): raw = as the teacher gives "
      "them, standardised, frame loss; logit = their log-odds, standardised, frame loss; bce = heads "
      "predict logits, fitted by the Bernoulli KL to the posteriors (usad2.distill.loss); mse = posteriors "
      "centred and scaled by one std per layer, squared error instead of L1 in the frame loss")
    a("--norm_batches", type=int, default=20, help="training batches used for the target statistics")
    a("--init", default=None, help="stage-1 training checkpoint, export, or experiment dir (its best.pt, "
      "else last.pt) to start from")
    a("--drop_stage1", type=str2bool, default=True, help="with --stage2_teachers: drop the stage-1 teachers and heads")
    a("--stage2_teachers", type=_names, default=[], help="teachers whose LAST layer is distilled (stage 2)")
    a("--stage2_student_layer", type=int, default=-1, help="student layer predicting them (-1 = last)")
    a("--upscale_ranges", default=None, help="depth up-scaling of the --init model, e.g. 1-24,9-32")
    a("--head_hidden", type=int, default=None,
      help="hidden width of the heads (default d_model; 0 = linear heads, one Linear per teacher layer)")
    a("--num_workers", type=int, default=1, help="audio decoding threads of the data pipeline")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    a("--threads", type=int, default=1, help="torch intra-op threads per process")
    return p


def replay_script(argv, env=None, cwd=None):
    """The text of run.sh: cd to the working directory, then the same command (torchrun/srun if distributed)."""
    env = os.environ if env is None else env
    cmd = [sys.executable, "-m", "usad2.bin.distill"] + list(argv)
    world = int(env.get("WORLD_SIZE", "1"))
    if env.get("SLURM_NTASKS") and "TORCHELASTIC_RUN_ID" not in env and world > 1:
        cmd = ["srun", f"--ntasks={world}"] + cmd
    elif world > 1:
        local = int(env.get("LOCAL_WORLD_SIZE", world))
        cmd = ["torchrun", f"--nnodes={max(1, world // local)}", f"--nproc-per-node={local}", "-m",
               "usad2.bin.distill"] + list(argv)
    return ("#!/usr/bin/env bash\n# Written by usad2.bin.distill: replays this training; a rerun resumes "
            "from the latest checkpoint.\nset -euo pipefail\n"
            f"cd {shlex.quote(cwd or os.getcwd())}\n" + " ".join(shlex.quote(c) for c in cmd) + "\n")


def parse_args(argv):
    """Options from --config (YAML, safe_load) overridden by the command line; checked."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        parser.set_defaults(**config_defaults(first.config, parser))
    args = parser.parse_args(argv)
    for name in ("train_data", "out"):
        if not getattr(args, name):
            raise ConfigError(f"--{name} is required (on the command line or in --config)")
    if args.teacher_mode == "online":
        args.targets_dir = None
    elif args.teacher_mode == "offline" and not args.targets_dir:
        raise ConfigError("--teacher_mode offline needs --targets_dir")
    args.init = resolve_init(args.init)
    return args


def config_defaults(path, parser):
    """{dest: value} from a YAML config; unknown keys are an error naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--config {path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values")
    known = {a.dest: a for a in parser._actions}
    out = {}
    for key, value in data.items():
        dest = str(key).lstrip("-").replace("-", "_")
        action = known.get({"train_dir": "train_data", "dev_dir": "dev_data", "out_dir": "out",
                            "student": "preset"}.get(dest, dest))
        if action is None or dest in ("help", "config"):
            raise ConfigError(f"--config {path}: unknown option {key!r}")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[action.dest] = action.type(str(value)) if action.type and value is not None else value
    return out


def resolve_init(path):
    """An experiment dir stands for its checkpoints/best.pt (else last.pt); a Hugging Face model
    directory stands for itself."""
    from usad2.hf import is_hf_dir

    if path and os.path.isdir(path) and not is_hf_dir(path):
        for name in ("best.pt", "last.pt"):
            candidate = os.path.join(path, "checkpoints", name)
            if os.path.exists(candidate):
                return candidate
        raise ConfigError(f"--init {path}: a directory without checkpoints/best.pt or last.pt "
                          f"(nor a Hugging Face model directory)")
    return path


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    cfg = vars(args)
    cfg.pop("config")
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    # distill.log, not train.log: recipes redirect the launcher's output into train.log
    log_file = os.path.join(args.out, "distill.log" if rank == 0 else f"logs/distill.rank{rank}.log")
    logger = setup_logging(log_file=log_file)
    log_invocation(logger)
    if rank == 0:
        path = os.path.join(args.out, "run.sh")
        atomic_write_text(path, replay_script(argv))
        os.chmod(path, 0o755)
    from usad2.distill.trainer import train

    train(cfg)
    return 0


if __name__ == "__main__":
    run_main(main)
