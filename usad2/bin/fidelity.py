"""Per-teacher, per-layer fidelity of a student's prediction heads on dev -> fidelity.json / .md.

    python -m usad2.bin.fidelity --checkpoint exp/x/checkpoints/last.pt --dev_dir dump/raw/dev \\
        --targets_dir dump/targets [--out exp/x/fidelity] [--max_utts N]

For every head (teacher, teacher layer, student layer) of the training checkpoint: explained
variance and mean per-frame cosine of its predictions against the teacher layer on all valid
aligned dev frames, in original and standardised units, beside the same numbers for the mean
predictor (usad2.distill.fidelity says exactly how). Targets are the offline ones of
<targets_dir>/<teacher>/<dev set name>/ (stage 4); without --targets_dir the teachers run on the
dev audio. Writes <out>/fidelity.json and <out>/fidelity.md atomically and a .done stamp over the
arguments, the checkpoint and the dev/target index files; a matching stamp skips the work
(--force redoes it).
"""
import json
import logging
import os

import torch

from usad2.distill.fidelity import evaluate_checkpoint
from usad2.models.checkpoint import read_training_checkpoint
from usad2.report.fidelity import fidelity_markdown
from usad2.utils.atomic import atomic_write_text
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.stamp import clear, fingerprint, is_done, mark_done

logger = logging.getLogger("usad2.bin.fidelity")
VERSION = 1


def get_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (EXP/checkpoints/last.pt)")
    parser.add_argument("--dev_dir", required=True, help="dev data dir (its name selects the targets' set)")
    parser.add_argument("--targets_dir", default="",
                        help="offline targets root (<root>/<teacher>/<set>); empty: run the teachers online")
    parser.add_argument("--out", "--out_dir", default="", help="output folder (default: EXP/fidelity)")
    parser.add_argument("--max_utts", type=int, default=0,
                        help="use a seeded random subset of this many dev utterances (0: all)")
    parser.add_argument("--batch_seconds", type=float, default=0.0,
                        help="seconds of audio per batch (0: the checkpoint's --dev_batch_seconds)")
    parser.add_argument("--device", default="cpu", help="device of the student (and online teachers)")
    parser.add_argument("--num_threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--force", type=str2bool, default=False, help="redo even when the stamp matches")
    parser.add_argument("--progress", type=str2bool, default=True, help="tqdm progress bar")
    parser.add_argument("--log_level", default="INFO")
    return parser


def default_out(checkpoint):
    """EXP/fidelity for EXP/checkpoints/<file>."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(checkpoint))), "fidelity")


def _inputs(checkpoint, dev_dir, targets_dir, teachers):
    """Files whose content the stamp covers: the checkpoint, the dev index files, the targets' index files."""
    set_name = os.path.basename(os.path.normpath(dev_dir))
    targets = [os.path.join(targets_dir, t, set_name) for t in teachers] if targets_dir else []
    return [checkpoint, dev_dir, *targets]


def fidelity(checkpoint, dev_dir, targets_dir="", out="", max_utts=0, batch_seconds=0.0, device="cpu",
             force=False, progress=True):
    """Measure, write fidelity.json and fidelity.md into `out`; returns the fidelity document."""
    out = out or default_out(checkpoint)
    ckpt = read_training_checkpoint(checkpoint, "fidelity needs its prediction heads, teachers and target statistics")
    teachers = [t["name"] for t in ckpt.get("teachers") or []]
    args = {"version": VERSION, "checkpoint": os.path.abspath(checkpoint), "dev_dir": os.path.abspath(dev_dir),
            "targets_dir": os.path.abspath(targets_dir) if targets_dir else "", "max_utts": max_utts,
            "batch_seconds": batch_seconds}
    fp = fingerprint(args, _inputs(checkpoint, dev_dir, targets_dir, teachers))
    json_path = os.path.join(out, "fidelity.json")
    if force:
        clear(out)
    elif is_done(out, fp) and os.path.isfile(json_path):
        logger.info("fidelity: %s is up to date (stamp matches); --force true redoes it", out)
        with open(json_path, encoding="utf-8") as f:
            return json.load(f)
    run = evaluate_checkpoint(ckpt, checkpoint, dev_dir, targets_dir or None, max_utts, batch_seconds or None,
                              device, progress)
    doc = {"checkpoint": checkpoint, "step": ckpt.get("step"), "dev_dir": dev_dir,
           "targets": f"offline from `{targets_dir}`" if targets_dir else "from the teachers run online",
           "utterances": run.utterances, "standardisation": run.standardisation,
           "mean_predictor": run.mean_predictor, "heads": run.heads}
    atomic_write_text(json_path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    atomic_write_text(os.path.join(out, "fidelity.md"), fidelity_markdown(doc))
    mark_done(out, fp, {"checkpoint": checkpoint})
    for h in run.heads:
        logger.info("%s <- student L%d: EV %.3f (std %.3f; mean predictor %.3f), cos %.3f", h["head"],
                    h["student_layer"], h["student"]["orig"]["ev"], h["student"]["std"]["ev"],
                    h["mean"]["std"]["ev"], h["student"]["orig"]["cos"])
    logger.info("fidelity: %s (%d heads, %d utterances)", json_path, len(run.heads), run.utterances)
    return doc


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    log_invocation(logger)
    torch.set_num_threads(args.num_threads)
    fidelity(args.checkpoint, args.dev_dir, args.targets_dir, args.out, args.max_utts, args.batch_seconds,
             args.device, args.force, args.progress)
    return 0


if __name__ == "__main__":
    run_main(main)
