"""The paper's ablations (docs/method.md §6) as one grid on shared offline targets -> one comparison table.

    python -m usad2.studies.ablate --grid full,omega1,no_music,no_stage2,stage2_scratch \\
        --recipe_dir egs/multidomain --out exp/ablations --seeds 0,1,2 --max_steps 600 --plus_steps 200

Variants (each trained per seed, then probed with the same suite):
- full: stage 1 with every teacher at ω = --omega, then stage 2 ("+", the --plus_teachers' last
  layers) from that model for --plus_steps (no stage 2 when --plus_steps is 0).
- omega1: as full with ω = 1 in both stages (USAD v1's uniform teacher weights).
- no_music: as full without the teachers whose card domain is music.
- no_stage2: full's stage-1 model (the same run: nothing is trained twice).
- stage2_scratch: stage 2 alone, from a random initialisation, for --plus_steps.
- freq_stride1: as full with the student preset `<preset>_f1` (no frequency stride in the conv
  subsampler: the remedy of the frequency-resolution study, usad2.studies.freq_resolution).

Every run reads the same --targets_dir (offline targets are never re-extracted); runs are
child processes of `usad2.bin.distill` (resumed or skipped when rerun; --jobs of them at once).
The resulting students (their last checkpoints), the fbank baseline and a random-init student
are probed by `usad2.bin.probe` with one shared feature cache. Output in --out:
`ablations.json` (per variant and seed the probe entry, the summary metrics and their mean/std,
the direction checks), `ablations.md` (the table and the checks) and `ablations.png`.
"""
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from usad2.errors import ConfigError, Usad2Error
from usad2.studies._ablation_table import build_table, check_directions, model_name, plot, render_markdown
from usad2.utils.atomic import atomic_write_text
from usad2.utils.cli import make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.stamp import fingerprint, is_done, mark_done

logger = logging.getLogger("usad2.studies.ablate")
VARIANTS = ("full", "omega1", "no_music", "no_stage2", "stage2_scratch", "freq_stride1")


def _names(text):
    return [t.strip() for t in str(text).split(",") if t.strip()] if text else []


# ---- the run graph ---------------------------------------------------------------------------
class Run:
    """One distill invocation: its directory, argv and the run it starts from."""

    def __init__(self, name, argv, after=None):
        self.name, self.argv, self.after = name, list(argv), after

    def __repr__(self):
        return f"Run({self.name})"


def music_teachers(teachers, card_dirs=None):
    """The teachers among `teachers` whose card's domain is music."""
    from usad2.teachers.registry import load_card

    return [t for t in teachers if load_card(t, card_dirs).domain == "music"]


def plan(grid, seeds, opts):
    """({variant: {seed: final Run}}, [Runs in dependency order]) for the grid.

    `opts`: teachers, plus_teachers, omega, preset, max_steps, plus_steps, common (argv shared by
    every run), distill_config, plus_config, music (the music teachers), runs_dir, plus_targets
    (targets root of the stage-2 runs, optional).
    """
    unknown = sorted(set(grid) - set(VARIANTS))
    if unknown:
        raise ConfigError(f"--grid: unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    plus = opts["plus_teachers"] if opts["plus_steps"] > 0 else []
    if "stage2_scratch" in grid and not plus:
        raise ConfigError("--grid stage2_scratch needs --plus_teachers and --plus_steps > 0")
    if "no_music" in grid and not opts["music"]:
        raise ConfigError(f"--grid no_music: no teacher of domain music among {opts['teachers']}")
    runs, final = {}, {}

    def stage1(tag, seed, teachers, omega, preset):
        name = f"s1_{tag}_seed{seed}"
        if name not in runs:
            argv = (_cfg(opts["distill_config"]) + ["--teachers", ",".join(teachers), "--omega", str(omega),
                    "--student", preset, "--max_steps", str(opts["max_steps"]), "--seed", str(seed)])
            runs[name] = Run(name, argv + opts["common"] + ["--out_dir", os.path.join(opts["runs_dir"], name)])
        return runs[name]

    def stage2(tag, seed, init, omega, preset):
        name = f"s2_{tag}_seed{seed}"
        if name not in runs:
            start = (["--init", os.path.join(opts["runs_dir"], init.name)] if init
                     else ["--student", preset])
            argv = (_cfg(opts["plus_config"]) + ["--stage2_teachers", ",".join(plus), "--omega", str(omega),
                    "--max_steps", str(opts["plus_steps"]), "--seed", str(seed)] + start)
            argv += opts["common"] + ["--out_dir", os.path.join(opts["runs_dir"], name)]
            if opts.get("plus_targets"):  # stage-2 targets (last layers) may live in their own root
                argv += ["--targets_dir", opts["plus_targets"]]
            runs[name] = Run(name, argv, after=init)
        return runs[name]

    for variant in grid:
        final[variant] = {}
        for seed in seeds:
            teachers, omega, preset, tag = opts["teachers"], opts["omega"], opts["preset"], "full"
            if variant == "omega1":
                omega, tag = 1.0, "omega1"
            elif variant == "no_music":
                teachers, tag = [t for t in teachers if t not in opts["music"]], "no_music"
            elif variant == "freq_stride1":
                preset, tag = f"{opts['preset']}_f1", "freq_stride1"
            if variant == "stage2_scratch":
                final[variant][seed] = stage2("scratch", seed, None, omega, preset)
                continue
            s1 = stage1(tag, seed, teachers, omega, preset)
            final[variant][seed] = s1 if variant == "no_stage2" or not plus else stage2(tag, seed, s1, omega, preset)
    return final, list(runs.values())


def _cfg(path):
    return ["--config", path] if path else []


def _run_dir(run, runs_dir):
    return os.path.join(runs_dir, run.name)


def run_one(run, runs_dir, threads):
    """Train one run in a child process (skipped when its stamp matches the argv)."""
    out = _run_dir(run, runs_dir)
    fp = fingerprint({"argv": run.argv}, inputs=[])
    if is_done(out, fp) and os.path.isfile(os.path.join(out, "checkpoints", "last.pt")):
        logger.info("run %s: done (stamp matches)", run.name)
        return
    cmd = [sys.executable, "-m", "usad2.bin.distill"] + run.argv + ["--threads", str(threads)]
    os.makedirs(out, exist_ok=True)
    logger.info("run %s: %s", run.name, " ".join(cmd))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(os.path.join(out, "train.log"), "a", encoding="utf-8") as log:
        res = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if res.returncode != 0:
        raise Usad2Error(f"run {run.name} failed (exit {res.returncode}); see {out}/train.log; "
                         f"rerun: {' '.join(cmd)}")
    mark_done(out, fp, {"run": run.name})


def run_all(runs, runs_dir, jobs, threads):
    """Train the runs, --jobs at a time, each after the run it starts from."""
    pending, done = list(runs), set()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending:
            ready = [r for r in pending if r.after is None or r.after.name in done]
            if not ready:
                raise Usad2Error(f"runs with unmet dependencies: {pending}")
            for run, fut in [(r, pool.submit(run_one, r, runs_dir, threads)) for r in ready]:
                fut.result()
                done.add(run.name)
            pending = [r for r in pending if r.name not in done]


# ---- probing ---------------------------------------------------------------------------------
def probe_all(specs, data_root, out, jobs, probe_args, splits):
    """Probe each model spec in its own process (shared feature cache); {model: results entry}."""
    cache = os.path.join(out, "probe_features")

    def one(spec):
        name = spec.partition("=")[0]
        cmd = [sys.executable, "-m", "usad2.bin.probe", "--model", spec, "--data_root", data_root,
               "--out_dir", os.path.join(out, "probe", name), "--feature_cache", cache,
               "--train_set", splits[0], "--dev_set", splits[1], "--test_set", splits[2]] + probe_args
        log_path = os.path.join(out, "probe", f"{name}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:
            res = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
        if res.returncode != 0:
            raise Usad2Error(f"probe of {name} failed (exit {res.returncode}); see {log_path}")
        with open(os.path.join(out, "probe", name, "results.json"), encoding="utf-8") as f:
            return json.load(f)[name]

    # baselines first, alone: their features land in the cache before students run in parallel
    results = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for spec, entry in zip(specs, pool.map(one, specs)):
            results[spec.partition("=")[0]] = entry
    return results


# ---- the driver ------------------------------------------------------------------------------
def resolve_paths(args):
    """Fill train/dev/targets/data_root (and the demo configs) from --recipe_dir."""
    r = args.recipe_dir
    if r:
        args.train_dir = args.train_dir or os.path.join(r, "dump", "raw", "train_mix")
        args.dev_dir = args.dev_dir or os.path.join(r, "dump", "raw", "dev")
        args.targets_dir = args.targets_dir or os.path.join(r, "dump", "targets")
        args.data_root = args.data_root or os.path.join(r, "dump", "raw")
    for name in ("train_dir", "targets_dir", "data_root"):
        if not getattr(args, name):
            raise ConfigError(f"--{name} is required (or --recipe_dir)")
        if not os.path.isdir(getattr(args, name)):
            raise ConfigError(f"--{name} {getattr(args, name)}: no such directory")
    return args


def ablate(args, command=""):
    """Run the grid, probe, write ablations.{json,md,png}; returns the table."""
    args = resolve_paths(args)
    grid, seeds = _names(args.grid), [int(s) for s in _names(args.seeds)]
    if not grid or not seeds:
        raise ConfigError("--grid and --seeds must not be empty")
    teachers = _names(args.teachers)
    runs_dir = args.runs_dir or os.path.join(args.out, "runs")
    common = ["--train_dir", args.train_dir, "--targets_dir", args.targets_dir, "--teacher_mode", "offline"]
    common += ["--dev_dir", args.dev_dir] if args.dev_dir else []
    common += ["--teacher_cards", args.teacher_cards] if args.teacher_cards else []
    common += _names_argv(args.distill_args)
    opts = {"teachers": teachers, "plus_teachers": _names(args.plus_teachers), "omega": args.omega,
            "preset": args.preset, "max_steps": args.max_steps, "plus_steps": args.plus_steps, "common": common,
            "distill_config": args.distill_config, "plus_config": args.plus_config, "runs_dir": runs_dir,
            "music": music_teachers(teachers, args.teacher_cards), "plus_targets": args.plus_targets_dir}
    final, runs = plan(grid, seeds, opts)
    logger.info("ablation grid %s, seeds %s: %d training runs", grid, seeds, len(runs))
    run_all(runs, runs_dir, args.jobs, args.threads)
    # one random initialisation per seed, so the baseline's spread is measured like the students'
    specs = ["fbank"] + [f"random_init.s{seed}=random:{args.preset}@{seed}" for seed in seeds]
    num_baselines = len(specs)
    for variant, by_seed in final.items():
        for seed, run in by_seed.items():
            specs.append(f"{model_name(variant, seed)}={os.path.join(runs_dir, run.name, 'checkpoints', 'last.pt')}")
    splits = (args.train_set, args.dev_set, args.test_set)
    results = probe_all(specs[:num_baselines], args.data_root, args.out, 1, _names_argv(args.probe_args), splits)
    results.update(probe_all(specs[num_baselines:], args.data_root, args.out, args.jobs, _names_argv(args.probe_args), splits))
    table = build_table(results, final, seeds)
    checks = check_directions(table)
    doc = {"grid": grid, "seeds": seeds, "runs": {r.name: r.argv for r in runs},
           "table": {row: {k: v for k, v in d.items()} for row, d in table.items()}, "directions": checks}
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(os.path.join(args.out, "ablations.json"),
                      json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    atomic_write_text(os.path.join(args.out, "ablations.md"), render_markdown(table, checks, command))
    plot(table, os.path.join(args.out, "ablations.png"))
    for c in checks:
        logger.info("%s: %+.4f on %s (%s)", c["name"], c["diff"], c["metric"], "holds" if c["holds"] else "DOES NOT HOLD")
    return table


def _names_argv(text):
    import shlex

    return shlex.split(text) if text else []


def get_parser():
    p = make_parser(__doc__.splitlines()[0])
    a = p.add_argument
    a("--grid", default="full,omega1,no_music,no_stage2,stage2_scratch", help=f"variants: {', '.join(VARIANTS)}")
    a("--out", "--out_dir", dest="out", required=True, help="output folder (runs/, probe/, ablations.*)")
    a("--runs_dir", default=None, help="training runs folder (default <out>/runs); grids sharing it share runs")
    a("--recipe_dir", default=None, help="recipe folder: its dump/raw/{train_mix,dev}, dump/targets, dump/raw")
    a("--train_dir", default=None, help="training data dir (default <recipe_dir>/dump/raw/train_mix)")
    a("--dev_dir", default=None, help="dev data dir (default <recipe_dir>/dump/raw/dev)")
    a("--targets_dir", default=None, help="shared offline targets root (default <recipe_dir>/dump/targets)")
    a("--plus_targets_dir", default=None, help="offline targets of the stage-2 teachers' last layers "
      "(default: --targets_dir)")
    a("--data_root", default=None, help="probe data root holding train/dev/test (default <recipe_dir>/dump/raw)")
    a("--train_set", default="train", help="probe training set name")
    a("--dev_set", default="dev", help="probe selection set name")
    a("--test_set", default="test", help="probe test set name")
    a("--teachers", default="speech_embedding,yamnet,basic_pitch", help="stage-1 teachers")
    a("--plus_teachers", default="resemblyzer,yamnet", help="stage-2 teachers (last layer)")
    a("--teacher_cards", default=None, help="directory of user teacher cards")
    a("--omega", type=float, default=10.0, help="domain weight ω of the full model")
    a("--preset", default="mini", help="student preset (the demo recipe's)")
    a("--seeds", default="0", help="training seeds, comma-separated")
    a("--max_steps", type=int, default=600, help="stage-1 steps per run")
    a("--plus_steps", type=int, default=200, help="stage-2 steps per run (0: no stage 2 anywhere)")
    a("--distill_config", default=None, help="YAML of stage-1 options (e.g. conf/distill_default.yaml)")
    a("--plus_config", default=None, help="YAML of stage-2 options (e.g. conf/plus_default.yaml)")
    a("--distill_args", default="", help="extra options for every distill run (shell-quoted)")
    a("--probe_args", default="", help="extra options for every probe (shell-quoted)")
    a("--jobs", type=int, default=2, help="training runs / probes at once")
    a("--threads", type=int, default=1, help="torch threads per training run")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_parser().parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    setup_logging(log_file=os.path.join(args.out, "ablate.log"))
    log_invocation(logger)
    import shlex

    ablate(args, "python -m usad2.studies.ablate " + " ".join(shlex.quote(a) for a in argv))
    return 0


if __name__ == "__main__":
    run_main(main)
