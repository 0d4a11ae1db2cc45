"""The report's LLM-evaluation section, from usad2.bin.llm_eval's results.json and details.json.

Two tables: one row per model with its linear-probe mean next to its LLM-eval mean, each model's
rank by both, the answers outside the label set and the caption chrF (so a disagreement between
the two protocols shows at a glance); then the LLM evaluation's per-task table
(usad2.report.tables.results_table). Both means average the classification domains' means; the
probe's also covers its frame-level tasks, which the LLM evaluation cannot ask.
Only JSON files are read: the report never imports the evaluation package.
"""
import json
import math
import os

from usad2.report import tables

HOW_TO_READ = ("Frozen encoder -> linear projector -> causal LM with LoRA, every label asked as a question "
               "(usad2.bin.llm_eval). LLM-eval mean: normalised exact match averaged per domain, then over the "
               "domains; outside = answers that are no training label of their task; caption = chrF of the "
               "open-ended caption. Ranks: 1 = best of the models evaluated both ways.")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _ranks(scores):
    order = sorted(scores, key=lambda m: -scores[m])
    return {m: order.index(m) + 1 for m in scores}


def _pct(value):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def comparison_table(probe_results, llm_results):
    """Markdown: model | probe mean | LLM-eval mean | ranks | outside | caption."""
    models = tables.order_models(llm_results)
    both = {m for m in models if m in probe_results}
    probe_rank = _ranks({m: probe_results[m]["_mean"] for m in both})
    llm_rank = _ranks({m: llm_results[m]["_mean"] for m in both})
    lines = ["| model | linear probe mean | LLM-eval mean | rank (probe / LLM) | outside label set | caption chrF |",
             "|---|---|---|---|---|---|"]
    for m in models:
        entry = llm_results[m]
        probe = probe_results.get(m, {}).get("_mean")
        rank = f"{probe_rank[m]} / {llm_rank[m]}" if m in both else "-"
        lines.append(f"| {m} | {_pct(probe)} | {_pct(entry.get('_mean'))} | {rank} | "
                     f"{_pct(entry.get('_outside_label_set'))} | {_pct(entry.get('caption'))} |")
    return "\n".join(lines) + "\n"


def llm_eval_lines(llm_dir, probe_results):
    """Markdown lines of the section, or [] when `llm_dir` holds no results.json."""
    path = os.path.join(llm_dir, "results.json") if llm_dir else ""
    if not path or not os.path.isfile(path):
        return []
    results = _read(path)
    details = _read(os.path.join(llm_dir, "details.json"))
    steps = sorted({d.get("steps") for m in details.values() for d in m.values()} - {None})
    rates = sorted({round(d.get("tokens_per_second", 0), 2) for m in details.values() for d in m.values()})
    return ["## LLM-based evaluation", "", HOW_TO_READ + f" Training steps per model: {', '.join(map(str, steps))}; "
            f"audio tokens per second: {', '.join(map(str, rates))} (`{llm_dir}`).", "",
            comparison_table(probe_results, results), "Per task (test scores in percent):", "",
            tables.results_table(results, details)]
