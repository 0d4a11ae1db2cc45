"""Markdown tables of probe results: tasks (grouped by domain) x models, in percent.

Column order: the students first (names starting with "student"), then the teachers and any
other model, then the toplines (names starting with "teachers_concat": all teachers at once),
then `fbank` and `random_init` (the baselines), each group in the order given.
"""
import math

BASELINES = ("fbank", "random_init")
TOPLINE_PREFIX = "teachers_concat"


def order_models(names):
    """Students, then teachers and others, then toplines, then baselines."""
    names = list(names)
    students = [n for n in names if n.startswith("student")]
    toplines = [n for n in names if n.startswith(TOPLINE_PREFIX)]
    baselines = [n for b in BASELINES for n in names if n == b]
    others = [n for n in names if n not in students + toplines + baselines]
    return students + others + toplines + baselines


def _pct(value):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def table_rows(results, details):
    """[(label, kind, {model: score}, chance)] in display order: tasks by domain, domain means, mean."""
    tasks = {}
    for model_details in details.values():
        for task, d in model_details.items():
            tasks.setdefault(task, d)
    domains = sorted({d["domain"] for d in tasks.values()})
    rows = []
    for domain in domains:
        for task in sorted(t for t, d in tasks.items() if d["domain"] == domain):
            scores = {m: r[task] for m, r in results.items() if task in r}
            rows.append((task, "task", scores, tasks[task].get("chance"), domain, tasks[task]["metric"]))
    for domain in domains:
        scores = {m: r["_domain_mean"][domain] for m, r in results.items() if domain in r.get("_domain_mean", {})}
        rows.append((f"{domain} mean", "domain", scores, None, domain, ""))
    rows.append(("overall mean", "mean", {m: r.get("_mean") for m, r in results.items()}, None, "", ""))
    return rows


def results_table(results, details, models=None):
    """The Markdown table: one row per task, domain mean and overall mean; best score in bold."""
    models = models or order_models(results)
    head = "| task | domain | metric | chance | " + " | ".join(models) + " |"
    lines = [head, "|" + "---|" * (4 + len(models))]
    for label, kind, scores, chance, domain, metric in table_rows(results, details):
        valid = [scores[m] for m in models if isinstance(scores.get(m), float) and not math.isnan(scores[m])]
        best = max(valid) if valid else None
        cells = []
        for m in models:
            text = _pct(scores.get(m))
            cells.append(f"**{text}**" if best is not None and scores.get(m) == best and text != "-" else text)
        name = f"**{label}**" if kind != "task" else label
        lines.append(f"| {name} | {domain} | {metric} | {_pct(chance)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_layers_table(details, models):
    """Per task and model, the layer with the largest learned weight (and that weight)."""
    tasks = sorted({t for m in models for t in details.get(m, {})})
    lines = ["| task | " + " | ".join(models) + " |", "|" + "---|" * (1 + len(models))]
    for task in tasks:
        cells = []
        for m in models:
            d = details.get(m, {}).get(task)
            if not d:
                cells.append("-")
                continue
            w = d["layer_weights"]
            i = max(range(len(w)), key=w.__getitem__)
            cells.append(f"{d['layer_names'][i]} ({w[i]:.2f})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
