"""Stage 8: probe frozen models on a task suite -> <out_dir>/results.json and details.json.

    python -m usad2.bin.probe --model student=exp/x/export/model.pt --model fbank \\
        --model random_init=tiny --model yamnet --model student_heads=heads:exp/x/checkpoints/last.pt \\
        --data_root dump/raw --suite demo --out_dir exp/x/probe

Model specs (`usad2.probe.features.model_from_spec`): `fbank`; `NAME=EXPORT_OR_CHECKPOINT`;
`NAME=heads:TRAINING_CHECKPOINT`; `random_init[=PRESET_OR_EXPORT]`; `CARD` or
`NAME=teacher:CARD[@CHECKPOINT]`; `NAME=concat:CARD,CARD,...` (those teachers at once, from their
cached features: the `teachers_concat` topline); `teachers_of=TRAINING_CHECKPOINT` expands to every teacher card
that checkpoint was distilled from (those already named are not repeated). Features are cached
under <out_dir>/features; the stage is skipped when its .done stamp matches the arguments and
inputs (--force redoes it).
"""
import logging
import os

import torch

from usad2.errors import ConfigError
from usad2.probe.features import model_from_spec, spec_card_names
from usad2.probe.heads import CONCAT_L2S, NAMED_READOUTS, ProbeConfig
from usad2.probe.run import run_probe
from usad2.probe.tasks import get_suite
from usad2.teachers.registry import add_teacher_cards_option
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.precision import PRECISIONS, resolve_precision
from usad2.utils.stamp import clear, fingerprint, is_done, mark_done

logger = logging.getLogger("usad2.bin.probe")


def get_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="model spec, repeatable: fbank, NAME=EXPORT, NAME=heads:CKPT, random_init=PRESET[@SEED], CARD, "
                        "NAME=concat:CARD,CARD,... (teachers at once), teachers_of=CKPT")
    parser.add_argument("--data_root", required=True, help="folder holding the train/dev/test data dirs")
    parser.add_argument("--suite", default="demo", help="task suite")
    parser.add_argument("--tasks", default="", help="comma-separated subset of the suite's tasks (empty: all)")
    parser.add_argument("--train_set", default="train", help="training data dir name under data_root")
    parser.add_argument("--dev_set", default="dev", help="selection data dir name")
    parser.add_argument("--test_set", default="test", help="test data dir name")
    parser.add_argument("--out_dir", "--out", required=True, help="output folder")
    parser.add_argument("--feature_cache", default="",
                        help="feature cache folder, shareable between experiments (empty: <out_dir>/features)")
    parser.add_argument("--layer", default="weighted",
                        help="'weighted' (learned softmax weights, s3prl's featurizer), 'concat' (every layer "
                        "side by side, a linear map fitted to convergence by L-BFGS, L2 chosen on dev from "
                        "--l2s) or a 0-based index into the model's layers (student: 0 = frontend; teacher: "
                        "0 = its layer 1; names in details.json)")
    parser.add_argument("--hidden", type=int, default=0, help="0: linear head; N > 0: MLP with N hidden units")
    parser.add_argument("--lrs", default="1e-3,1e-2", help="learning rates tried (comma-separated)")
    parser.add_argument("--weight_decays", default="0,1e-3", help="weight decays tried (comma-separated)")
    parser.add_argument("--max_epochs", type=int, default=40, help="epochs per probe (best epoch chosen on dev)")
    parser.add_argument("--l2s", default=",".join(f"{x:g}" for x in CONCAT_L2S),
                        help="--layer concat: L2 penalties tried (comma-separated; per mean example loss)")
    parser.add_argument("--max_frames", type=int, default=20000, help="frames per split for frame-level tasks")
    parser.add_argument("--max_frame_utts", type=int, default=200,
                        help="utterances per data dir whose frames are kept for frame-level tasks")
    parser.add_argument("--seed", type=int, default=0, help="seed of probes, frame subsets and random_init")
    add_teacher_cards_option(parser, default_from_env=False, help_extra="; a user card's file is part of the stamp")
    parser.add_argument("--device", default="cpu", help="device for feature extraction")
    parser.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                        help="feature extraction of students and torch teachers: fp32, bf16 autocast, or auto "
                        "(bf16 where the CPU/GPU has bf16 matrix units); the probes themselves train in fp32")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--force", type=str2bool, default=False, help="redo even when the stamp matches")
    parser.add_argument("--log_level", default="INFO")
    return parser


def _floats(text, what):
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--{what}: expected comma-separated numbers, got {text!r}") from None


def expand_specs(model_specs):
    """Replace each `teachers_of=CKPT` by the teacher card names recorded in that checkpoint."""
    from usad2.models.checkpoint import read_torch_file

    named = {s.partition("=")[0] for s in model_specs}
    out = []
    for spec in model_specs:
        name, _, path = spec.partition("=")
        if name != "teachers_of":
            out.append(spec)
            continue
        ckpt = read_torch_file(path)
        teachers = ckpt.get("teachers") if isinstance(ckpt, dict) else None
        if not teachers:
            raise ConfigError(f"--model {spec}: {path} records no teachers (not a training checkpoint?)")
        for teacher in teachers:
            if teacher["name"] not in named:
                named.add(teacher["name"])
                out.append(teacher["name"])
    return out


def user_card_files(model_specs, card_dirs=None):
    """The user card files (not the package's) that the specs' teachers are read from: a card edited
    under the same name then changes the probe's stamp (the package's cards change with its version)."""
    from usad2.teachers.registry import PACKAGE_CARD_DIR, card_path

    paths = [card_path(n, card_dirs) for s in model_specs for n in spec_card_names(s)]
    return sorted({p for p in paths if os.path.dirname(os.path.abspath(p)) != os.path.abspath(PACKAGE_CARD_DIR)})


def probe(model_specs, data_root, out_dir, suite="demo", tasks="", train_set="train", dev_set="dev",
          test_set="test", layer="weighted", hidden=0, lrs=(1e-3, 1e-2), weight_decays=(0.0, 1e-3),
          max_epochs=40, max_frames=20000, seed=0, device="cpu", force=False, max_frame_utts=200,
          feature_cache="", precision="auto", teacher_cards=None, l2s=CONCAT_L2S):
    """Probe the models of `model_specs` on the suite; returns the results dict (results.json)."""
    suite_tasks = get_suite(suite, train_set, dev_set, test_set)
    if tasks:
        wanted = [t.strip() for t in tasks.split(",") if t.strip()]
        unknown = sorted(set(wanted) - {t.name for t in suite_tasks})
        if unknown:
            raise ConfigError(f"--tasks: {unknown} not in suite {suite!r} ({[t.name for t in suite_tasks]})")
        suite_tasks = [t for t in suite_tasks if t.name in wanted]
    if layer not in NAMED_READOUTS and not str(layer).isdigit():
        raise ConfigError(f"--layer: 'weighted', 'concat' or a layer index, got {layer!r}")
    if layer == "concat" and hidden:
        raise ConfigError(f"--layer concat is a linear read-out; --hidden {hidden} needs --layer weighted or N")
    if layer == "concat" and (not l2s or min(l2s) < 0):
        raise ConfigError(f"--l2s: one or more penalties >= 0, got {l2s!r}")
    model_specs = expand_specs(model_specs)
    names = [s.partition("=")[0] for s in model_specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--model: duplicate model names in {names}")
    config = ProbeConfig(layer=layer if layer in NAMED_READOUTS else int(layer), hidden=hidden,
                         lrs=tuple(lrs), weight_decays=tuple(weight_decays), max_epochs=max_epochs, seed=seed,
                         l2s=tuple(l2s))
    args = {"models": list(model_specs), "suite": [t.__dict__ for t in suite_tasks], "config": config.stamp_fields(),
            "max_frames": max_frames, "max_frame_utts": max_frame_utts}
    resolved = resolve_precision(precision, device)
    if resolved != "fp32":  # fp32 results keep the stamps they had before the option existed
        args["precision"] = resolved
    inputs = [os.path.join(data_root, s) for s in (train_set, dev_set, test_set)]
    inputs += [p for s in model_specs for p in [s.partition("=")[2].split(":", 1)[-1]] if os.path.isfile(p)]
    inputs += user_card_files(model_specs, teacher_cards)
    fp = fingerprint(args, inputs)
    results_path = os.path.join(out_dir, "results.json")
    if force:
        clear(out_dir)
    elif is_done(out_dir, fp) and os.path.isfile(results_path):
        logger.info("probe: %s is up to date (stamp matches); --force true redoes it", out_dir)
        import json
        with open(results_path, encoding="utf-8") as f:
            return json.load(f)
    models = [model_from_spec(s, seed=seed, device=device, precision=resolved, card_dirs=teacher_cards)
              for s in model_specs]
    results, _ = run_probe(models, data_root, suite_tasks, out_dir, config, max_frames, force, max_frame_utts,
                           feature_cache or None)
    mark_done(out_dir, fp, {"models": names})
    for name, entry in results.items():
        logger.info("%s: mean %.4f, domains %s", name, entry["_mean"],
                    {d: round(v, 4) for d, v in entry["_domain_mean"].items()})
    return results


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    log_invocation(logger)
    torch.set_num_threads(args.num_threads)
    probe(args.model, args.data_root, args.out_dir, args.suite, args.tasks, args.train_set, args.dev_set,
          args.test_set, args.layer, args.hidden, _floats(args.lrs, "lrs"),
          _floats(args.weight_decays, "weight_decays"), args.max_epochs, args.max_frames, args.seed,
          args.device, args.force, args.max_frame_utts, args.feature_cache, args.precision, args.teacher_cards,
          _floats(args.l2s, "l2s"))
    return 0


if __name__ == "__main__":
    run_main(main)
