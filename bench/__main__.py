"""Run usad2's benchmarks: `tools/venv/bin/python -m bench [--only NAME[,NAME]] [--quick]`.

Prints one line per measurement: name, measured ratio, target, PASS/FAIL (INFO: reported only).
Every baseline is measured in the same run, interleaved with the candidate. Numbers are per
core: torch (and onnxruntime in the teachers) run on one thread. See bench/README.md.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
os.environ.setdefault("MKL_NUM_THREADS", "1")

import importlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

from usad2.errors import ConfigError  # noqa: E402
from usad2.utils.atomic import atomic_write_text  # noqa: E402
from usad2.utils.cli import make_parser, run_main, str2bool  # noqa: E402
from usad2.utils.log import log_invocation, setup_logging  # noqa: E402

# name -> module under bench/ with run(quick) -> [Result]
BENCHMARKS = {
    "train_step": "bench.train_step",
    "mfu": "bench.flops",
    "pipeline": "bench.pipeline",
    "inference": "bench.inference",
    "frame_rate": "bench.frame_rate",
    "targets": "bench.targets",
    "memory": "bench.memory",
    "llm_eval": "bench.llm_eval",
}


def build_parser():
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    p.add_argument("--quick", type=str2bool, nargs="?", const=True, default=False,
                   help="small shapes and few repeats (a smoke run, not the reported numbers)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--strict", type=str2bool, default=False, help="exit with status 1 if a target is missed")
    return p


def select(only):
    names = [n.strip() for n in only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return names


def run_benchmarks(names, quick=False, out=sys.stdout):
    """Run the named benchmarks; print each result line as it comes; return all Results."""
    from bench.common import one_thread

    one_thread()
    import torch

    print(f"# usad2 benchmarks ({'quick' if quick else 'full'}): torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs visible", file=out, flush=True)
    results = []
    for name in names:
        t0 = time.perf_counter()
        module = importlib.import_module(BENCHMARKS[name])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = module.run(quick=quick)
        for r in got:
            print(r.line(), file=out, flush=True)
        logging.getLogger("bench").info("%s took %.0f s", name, time.perf_counter() - t0)
        results += got
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    logger = setup_logging()
    log_invocation(logger)
    results = run_benchmarks(select(args.only), args.quick)
    if args.json:
        atomic_write_text(args.json, json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    failed = [r.name for r in results if r.status == "FAIL"]
    print(f"# {len(results)} results, {len(failed)} below target" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    run_main(main)
