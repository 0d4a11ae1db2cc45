"""The distributed environment of a training process (docs/architecture.md#6-scale).

usad2 never spawns processes: `torchrun` sets RANK / LOCAL_RANK / WORLD_SIZE (and MASTER_ADDR /
MASTER_PORT), and under Slurm's `srun` the task variables SLURM_PROCID / SLURM_LOCALID /
SLURM_NTASKS are translated to the same three; the rendezvous address then comes from
MASTER_ADDR / MASTER_PORT when set, else from the first host of SLURM_JOB_NODELIST (or
SLURM_NODELIST) and a port derived from SLURM_JOB_ID, so every task of a job agrees on it.
torchrun's variables win when both are present (torchrun inside an allocation).

The process group uses nccl on CUDA and gloo on CPU, so the same code runs `torchrun
--nproc-per-node 2` on a laptop. A single process (no variables) needs no process group at all.
"""
import dataclasses
import datetime
import logging
import os
import re

from usad2.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DistEnv:
    """Where this process sits: global rank, rank on its node, number of processes."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    source: str = "single"  # "torchrun", "slurm" or "single"

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def needs_process_group(self):
        """Several processes, or one started by torchrun (so `torchrun --nproc-per-node 1` on a
        GPU still runs DDP over nccl, exactly as a larger launch would)."""
        return self.world_size > 1 or self.source == "torchrun"


def _int(env, name):
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"environment variable {name}={env[name]!r} is not an integer") from None


def first_slurm_host(nodelist):
    """First host name of a Slurm node list: "gpu[003-005,7],cpu1" -> "gpu003"."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ConfigError(f"cannot parse the Slurm node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    if not ranges:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def read_env(env=None):
    """DistEnv from torchrun's or Slurm's variables (in that order); a single process otherwise.

    Under Slurm it also fills MASTER_ADDR / MASTER_PORT in `env` when they are missing, since
    torch's env:// rendezvous reads them.
    """
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        result = DistEnv(rank, local, world, "torchrun")
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else rank
        result = DistEnv(rank, local, world, "slurm")
        if world > 1:
            nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
            env.setdefault("MASTER_ADDR", first_slurm_host(nodes))
            job = _int(env, "SLURM_JOB_ID") if "SLURM_JOB_ID" in env else 0
            env.setdefault("MASTER_PORT", str(20000 + job % 20000))
        env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"] = str(rank), str(local), str(world)
    else:
        return DistEnv()
    if not 0 <= result.rank < result.world_size or result.local_rank < 0:
        raise ConfigError(f"inconsistent {result.source} environment: rank {result.rank}, "
                          f"local rank {result.local_rank}, world size {result.world_size}")
    return result


def backend_for(device):
    """nccl for CUDA devices, gloo otherwise."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def pick_device(dist_env, requested="auto"):
    """The torch device string: cuda:<local rank> when CUDA is there (or asked), else cpu."""
    import torch

    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {requested} asked for CUDA but torch sees no CUDA device")
    if requested.startswith("cuda:"):
        return requested
    return f"cuda:{dist_env.local_rank % torch.cuda.device_count()}"


def init(dist_env, device, timeout_minutes=30):
    """Initialise the default process group (env:// rendezvous) when `needs_process_group`."""
    import torch
    import torch.distributed as dist

    if not dist_env.needs_process_group or dist.is_initialized():
        return
    extra = {}
    if str(device).startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        extra["device_id"] = torch.device(device)  # binds nccl to this GPU (barriers need it)
    dist.init_process_group(backend_for(device), rank=dist_env.rank, world_size=dist_env.world_size,
                            timeout=datetime.timedelta(minutes=timeout_minutes), **extra)
    logging.getLogger("usad2").info("process group: backend %s, rank %d of %d (local rank %d, from %s)",
                                    backend_for(device), dist_env.rank, dist_env.world_size,
                                    dist_env.local_rank, dist_env.source)


def is_initialized():
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def shutdown():
    """Destroy the process group if one exists."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor):
    """Sum `tensor` over all processes in place (no-op for a single process); returns it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj, src=0):
    """`obj` of rank `src` on every process (pickled by torch.distributed, ranks trust each other)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on every process ([obj] for a single process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
