"""Stage 9: the report: RESULTS.md (tables), results.json and PNG plots from a probe run.

    python -m usad2.bin.report --probe_dir exp/x/probe --train_log exp/x --out_dir exp/x/report \
        [--fidelity exp/x/fidelity ...] [--domains dump/raw/test ...] [--checkpoint exp/x/checkpoints/last.pt] \
        [--llm_eval exp/x/llm_eval]

Reads <probe_dir>/results.json and details.json (usad2.bin.probe), when --train_log names a
training folder or log file, the trainer's per-step metrics.jsonl (or train_log.jsonl), and for
each --fidelity DIR its fidelity.json (usad2.bin.fidelity), shown as a table per checkpoint; for
each --domains DIR that has utt2domain_post (usad2.bin.infer_domains), the confusion of its labels
with the inferred domains, and for --checkpoint the effective weight of each teacher per training
utterance (a histogram per teacher); see usad2.report.domains. With --llm_eval DIR holding
usad2.bin.llm_eval's results.json, an LLM-evaluation section (probe mean vs LLM-eval mean and
ranks per model, then its per-task table; usad2.report.llm_eval). Writes
<out_dir>/RESULTS.md, <out_dir>/results.json (docs/formats.md#6-probe-and-report-results),
<out_dir>/details.json and <out_dir>/plots/{task_scores,train_loss,layer_weights_<model>}.png.
"""
import json
import logging
import os

from usad2.errors import ConfigError
from usad2.report import plots, tables
from usad2.report.trainlog import find_log, read_train_log
from usad2.utils.atomic import atomic_write_text
from usad2.utils.cli import make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging

logger = logging.getLogger("usad2.bin.report")


def get_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--probe_dir", "--probe", required=True, help="output folder of usad2.bin.probe")
    parser.add_argument("--train_log", default="", help="training folder (or metrics.jsonl); empty: no loss plot")
    parser.add_argument("--out_dir", "--out", required=True, help="report folder")
    parser.add_argument("--fidelity", action="append", default=[],
                        help="output folder of usad2.bin.fidelity (repeatable): its per-head table goes into RESULTS.md")
    parser.add_argument("--domains", action="append", default=[],
                        help="data dir with utt2domain_post (repeatable): inferred vs true domains; "
                             "skipped when the file is absent")
    parser.add_argument("--checkpoint", default="",
                        help="training checkpoint: effective teacher weights over its training data")
    parser.add_argument("--llm_eval", default="",
                        help="output folder of usad2.bin.llm_eval: its section is added when it holds results.json")
    parser.add_argument("--title", default="", help="report title (default: the probe folder)")
    parser.add_argument("--log_level", default="INFO")
    return parser


def _read_json(path, verb="usad2.bin.probe"):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run {verb} first)") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None


def _weights_plots(details, models, plot_dir):
    written = []
    for model in models:
        entries = details.get(model, {})
        tasks = sorted(t for t, d in entries.items() if len(d["layer_weights"]) > 1)
        if not tasks:
            continue
        names = entries[tasks[0]]["layer_names"]
        path = os.path.join(plot_dir, f"layer_weights_{model}.png")
        written.append(plots.layer_weights(model, tasks, names, [entries[t]["layer_weights"] for t in tasks], path))
    return written


def _loss_section(train_log, plot_dir):
    """(markdown lines, plot path or None) of the training-loss part."""
    log_path = find_log(train_log) if train_log else None
    if not train_log:
        return [], None
    if log_path is None:
        return [f"No per-step training log (metrics.jsonl / train_log.jsonl) under `{train_log}`.", ""], None
    curves = read_train_log(log_path)
    if not curves["total"] and not curves["teachers"]:
        return [f"The training log `{log_path}` holds no loss entries.", ""], None
    path = plots.train_loss(curves, os.path.join(plot_dir, "train_loss.png"))
    lines = ["| teacher | first step loss | last step loss |", "|---|---|---|"]
    for teacher, pts in sorted(curves["teachers"].items()):
        lines.append(f"| {teacher} | {pts[0][1]:.4f} (step {pts[0][0]}) | {pts[-1][1]:.4f} (step {pts[-1][0]}) |")
    return [f"Per-teacher loss (mean over its heads) from `{log_path}`:", "", *lines, "",
            "![training loss](plots/train_loss.png)", ""], path


def _fidelity_section(fidelity_dirs):
    """Markdown lines of the fidelity tables, one subsection per fidelity folder."""
    from usad2.report.fidelity import HOW_TO_READ, fidelity_notes, fidelity_table

    if not fidelity_dirs:
        return []
    lines = ["## Teacher-layer fidelity of the prediction heads", "",
             "How closely the student's prediction heads reproduce each teacher layer on the dev set "
             "(usad2.bin.fidelity). " + HOW_TO_READ, ""]
    for directory in fidelity_dirs:
        doc = _read_json(os.path.join(directory, "fidelity.json"), "usad2.bin.fidelity")
        lines += [f"### `{doc['checkpoint']}`", "", fidelity_notes(doc), "", fidelity_table(doc)]
    return lines


def _domain_section(domain_dirs, checkpoint, plot_dir):
    """Markdown lines of the domain part: inferred vs true domains, effective teacher weights."""
    from usad2.report.domains import confusion_lines, weight_lines

    confusions = [line for d in domain_dirs for line in confusion_lines(d)]
    weights = weight_lines(checkpoint, plot_dir)
    lines = []
    if confusions:
        lines += ["## Inferred domains", "", "The most probable domain of each utterance's posterior "
                  "(usad2.bin.infer_domains) against its label.", "", *confusions]
    if weights:
        lines += ["## Effective teacher weights", "", *weights]
    return lines


def make_report(probe_dir, out_dir, train_log="", title="", fidelity_dirs=(), domain_dirs=(), checkpoint="",
                llm_eval_dir=""):
    """Write RESULTS.md, results.json, details.json and plots; returns the RESULTS.md path.

    `fidelity_dirs`: folders of usad2.bin.fidelity whose tables are added to RESULTS.md;
    `domain_dirs` / `checkpoint`: the domain section (see the module docstring);
    `llm_eval_dir`: usad2.bin.llm_eval's output folder (its section, when it holds results.json).
    """
    from usad2.report.llm_eval import llm_eval_lines

    results = _read_json(os.path.join(probe_dir, "results.json"))
    details = _read_json(os.path.join(probe_dir, "details.json"))
    models = tables.order_models(results)
    plot_dir = os.path.join(out_dir, "plots")
    os.makedirs(plot_dir, exist_ok=True)
    rows = [(label, scores) for label, _, scores, *_ in tables.table_rows(results, details)]
    plots.task_bars(results, models, rows, os.path.join(plot_dir, "task_scores.png"))
    weight_plots = _weights_plots(details, models, plot_dir)
    loss_lines, _ = _loss_section(train_log, plot_dir)
    fidelity_lines = _fidelity_section(fidelity_dirs)
    text = [f"# {title or 'Probe results: ' + probe_dir}", "",
            "Test scores in percent (metric per task; chance = that metric for always predicting the majority "
            "training class, or the mean positive rate for mAP). Probes: "
            "frozen features, learned softmax layer weights or one chosen layer, linear or MLP head, "
            "hyper-parameters chosen on dev. Best score per row in bold. `_mean` = mean of the domain means.", "",
            tables.results_table(results, details, models), "![task scores](plots/task_scores.png)", "",
            *llm_eval_lines(llm_eval_dir, results),
            "## Layer with the largest learned weight", "", tables.best_layers_table(details, models)]
    text += [f"![layer weights {os.path.basename(p)}](plots/{os.path.basename(p)})" for p in weight_plots] + [""]
    if loss_lines:
        text += ["## Training loss", "", *loss_lines]
    text += fidelity_lines
    text += _domain_section(domain_dirs, checkpoint, plot_dir)
    path = os.path.join(out_dir, "RESULTS.md")
    atomic_write_text(path, "\n".join(text) + "\n")
    for name, obj in (("results.json", results), ("details.json", details)):
        atomic_write_text(os.path.join(out_dir, name), json.dumps(obj, indent=2, sort_keys=True) + "\n")
    logger.info("report: %s (%d models, %d plots)", path, len(models), len(os.listdir(plot_dir)))
    return path


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    log_invocation(logger)
    make_report(args.probe_dir, args.out_dir, args.train_log, args.title, args.fidelity, args.domains,
                args.checkpoint, args.llm_eval)
    return 0


if __name__ == "__main__":
    run_main(main)
