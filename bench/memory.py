"""Peak resident memory (RSS) of one `small` training step at 4 x 10 s (reported, no target).

Runs in a fresh subprocess so the number is not inflated by other benchmarks: the child builds
the step (model, heads, AdamW, batch, random targets), reads its peak RSS, runs two steps (the
second allocates nothing new for AdamW state) and reads it again. Peak RSS is VmHWM from
/proc/self/status: getrusage's ru_maxrss survives exec on Linux, so a child of a large parent
would report the parent's peak.
"""
import json
import os
import subprocess
import sys

from bench.common import Result


def peak_rss_kb():
    """High-water mark of this process's resident memory (kB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(batch, seconds):
    from bench.common import one_thread
    from bench.train_step import Usad2Step
    from usad2.models.presets import get_preset

    one_thread()
    step = Usad2Step(get_preset("small"), batch, seconds)
    before = peak_rss_kb()
    step()
    step()
    after = peak_rss_kb()
    print(json.dumps({"before_kb": before, "peak_kb": after}))


def run(quick=False):
    batch, seconds = (2, 4.0) if quick else (4, 10.0)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"from bench.memory import child; child({batch}, {seconds})"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    numbers = json.loads(out.strip().splitlines()[-1])
    peak_gb = numbers["peak_kb"] / 2 ** 20
    return [Result("memory small_train_step peak RSS", peak_gb, unit="GiB",
                   note=f"batch {batch} x {seconds:g} s; {numbers['before_kb'] / 2 ** 20:.2f} GiB before the "
                        f"first step (model, AdamW, batch, targets, libraries)")]
