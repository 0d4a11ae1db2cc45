"""Shared helpers of the benchmarks: result lines, interleaved timing, one-thread setup.

Every benchmark returns `Result`s; a result with a target prints PASS/FAIL, one without
(memory, informative side numbers) prints INFO. Timings interleave candidate and baseline
(A, B, A, B, ...) and take medians, so load from other jobs on a shared machine hits both alike.
"""
import dataclasses
import os
import statistics
import time
from typing import Optional


@dataclasses.dataclass
class Result:
    """One printed line: `value` compared with `target` by `op` (">=" or "<=")."""
    name: str
    value: float
    target: Optional[float] = None
    op: str = ">="
    unit: str = "x"
    note: str = ""

    @property
    def status(self):
        if self.target is None:
            return "INFO"
        ok = self.value >= self.target if self.op == ">=" else self.value <= self.target
        return "PASS" if ok else "FAIL"

    def line(self):
        target = f"{self.op} {self.target:g}{self.unit}" if self.target is not None else "-"
        return (f"{self.name:<34} {self.value:>10.3f}{self.unit:<3} target {target:<12} "
                f"{self.status:<4}  {self.note}")

    def to_dict(self):
        return dict(dataclasses.asdict(self), status=self.status)


def one_thread():
    """Per-core numbers: one torch intra-op and inter-op thread (set before any parallel work)."""
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass


def timed(fn):
    """Wall seconds of one call of fn()."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns, repeats, warmup=1):
    """Median seconds per call of each function in `fns` ({name: fn}), calls interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def best_of(fn, repeats, warmup=1):
    """Fastest of `repeats` calls (for peak measurements such as GEMM)."""
    for _ in range(warmup):
        fn()
    return min(timed(fn) for _ in range(repeats))
