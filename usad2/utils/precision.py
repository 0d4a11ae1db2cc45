"""Compute precision: fp32, bf16 autocast, or `auto` (bf16 where the hardware multiplies it fast).

Conventions: docs/architecture.md#61-precision.

bf16 is an autocast region only: master weights, optimizer state, checkpoints, exports, the fbank
front end and loss reductions stay fp32, so a model trained at bf16 loads and runs at fp32 and
the reverse. `auto` picks bf16 on a CUDA device that supports it and on a CPU whose flags show a
bf16 matrix unit (AVX512-BF16 or AMX-BF16); everywhere else fp32, where bf16 would only be emulated
and slower.
"""
import contextlib
import functools

import torch

from usad2.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "auto")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU feature flags (a set of strings) from /proc/cpuinfo; empty where it cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=None)
def cpu_has_bf16(cpuinfo="/proc/cpuinfo"):
    """True where the CPU has native bf16 matrix instructions."""
    return any(flag in cpu_flags(cpuinfo) for flag in CPU_BF16_FLAGS)


def resolve_precision(precision, device="cpu"):
    """"fp32" or "bf16" for a requested precision (fp32 / bf16 / auto) on `device`."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


def autocast(precision, device="cpu"):
    """A context manager: bf16 autocast on `device` for precision "bf16", nothing for "fp32".

    `precision` must be resolved already (see resolve_precision).
    """
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ConfigError(f"resolved precision must be fp32 or bf16, got {precision!r}")
    return contextlib.nullcontext()
