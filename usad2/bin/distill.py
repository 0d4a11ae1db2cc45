"""Distil a student from frozen teachers (stage 1, stage 2 "+", or continuation after up-scaling).

Launch with torchrun or srun for several processes (this command never spawns any):

    python -m usad2.bin.distill --train_dir dump/raw/train_mix --dev_dir dump/raw/dev \\
        --teachers speech_embedding,yamnet,basic_pitch --student tiny --out_dir exp/tiny
    torchrun --nproc-per-node 8 -m usad2.bin.distill ... --precision bf16
    # stage 2: new heads for the last layer of the stage-2 teachers, from the stage-1 model
    python -m usad2.bin.distill ... --init exp/tiny/checkpoints/best.pt \\
        --stage2_teachers whisper_large_v3,af_whisper --out_dir exp/tiny_plus
    # depth up-scaling, then brief stage-1 continuation
    python -m usad2.bin.distill ... --init exp/xl/checkpoints/last.pt --upscale_ranges 1-24,9-32

Rerunning the same command resumes from the newest checkpoint in <out_dir>/checkpoints. The command
writes <out_dir>/run.sh, which replays it exactly (through torchrun when WORLD_SIZE > 1). Every
option is a field of usad2.distill.config.TrainConfig; the old spellings --train_data, --dev_data,
--preset and --out (and those keys in --config files) are errors that name the new one.
"""
import dataclasses
import os
import shlex
import sys

import yaml

from usad2.distill.config import RENAMED, TrainConfig
from usad2.errors import ConfigError
from usad2.utils.atomic import atomic_write_text
from usad2.utils.cli import add_renamed_option, make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging


def build_parser():
    """One option per TrainConfig field (its default, type, choices and help), plus --config."""
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="YAML file of option values (keys as below); the command line wins")
    for f in dataclasses.fields(TrainConfig):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        p.add_argument(f"--{f.name}", type=f.metadata["parse"], default=default, choices=f.metadata["choices"],
                       help=f.metadata["help"])
    for old, new in RENAMED.items():  # one name per option: the old spelling stops with the new one
        add_renamed_option(p, f"--{old}", f"--{new}")
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
    """The TrainConfig of --config (YAML, safe_load) overridden by the command line; checked."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        parser.set_defaults(**config_defaults(first.config))
    values = vars(parser.parse_args(argv))
    values.pop("config")
    values["init"] = resolve_init(values["init"])
    return TrainConfig(**values)


def config_defaults(path):
    """{field: value} from a YAML config; unknown keys are an error naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"--config {path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of option names to values")
    parse = {f.name: f.metadata["parse"] for f in dataclasses.fields(TrainConfig)}
    out = {}
    for key, value in data.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest in RENAMED:
            raise ConfigError(f"--config {path}: option {key!r} was renamed {RENAMED[dest]!r} (same value)")
        if dest not in parse:
            raise ConfigError(f"--config {path}: unknown option {key!r}")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        out[dest] = parse[dest](str(value)) if value is not None else value
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
    cfg = parse_args(argv)
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    # distill.log, not train.log: recipes redirect the launcher's output into train.log
    log_file = os.path.join(cfg.out_dir, "distill.log" if rank == 0 else f"logs/distill.rank{rank}.log")
    logger = setup_logging(log_file=log_file)
    log_invocation(logger)
    if rank == 0:
        path = os.path.join(cfg.out_dir, "run.sh")
        atomic_write_text(path, replay_script(argv))
        os.chmod(path, 0o755)
    from usad2.distill.trainer import train

    train(cfg)
    return 0


if __name__ == "__main__":
    run_main(main)
