"""The ablation study's table (usad2.studies.ablate): probe entries -> per-variant summaries over
seeds, the paper's expected directions checked against seed noise, ablations.md and the plot.
"""
import os

import numpy as np

BASELINES = ("fbank", "random_init")
PITCH_TASKS = ("pitch_class", "frame_pitch_class", "chord_quality")


def model_name(variant, seed):
    """The probe's model name of one trained variant and seed."""
    return f"{variant}.s{seed}"


def summary(entry):
    """The metrics the paper's directions concern, from one probe entry (NaN when absent)."""
    dm = entry.get("_domain_mean", {})
    pitch = [entry[t] for t in PITCH_TASKS if t in entry]
    return {"speech": dm.get("speech", float("nan")), "audio": dm.get("audio", float("nan")),
            "music": dm.get("music", float("nan")),
            "pitch": float(np.mean(pitch)) if pitch else float("nan"), "overall": entry.get("_mean", float("nan"))}


def aggregate(per_seed):
    """{seed: summary} -> {metric: {"mean", "std", "n"}} (std over seeds, ddof 0 for one seed)."""
    out = {}
    for metric in next(iter(per_seed.values())):
        vals = np.array([s[metric] for s in per_seed.values()], dtype=float)
        out[metric] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1) if len(vals) > 1 else 0.0),
                       "n": int(len(vals))}
    return out


DIRECTIONS = (
    # (name, better variant, worse variant, metric)
    ("no music teacher is worse on the music tasks", "full", "no_music", "music"),
    ("no music teacher is worse on the pitch tasks", "full", "no_music", "pitch"),
    ("ω = 1 is worse on the speech tasks", "full", "omega1", "speech"),
    ("stage 2 from scratch is worse than from stage 1", "full", "stage2_scratch", "overall"),
    ("the full student beats fbank on the overall mean", "full", "fbank", "overall"),
    ("the full student beats random-init on the overall mean", "full", "random_init", "overall"),
)


def check_directions(table):
    """[{name, better, worse, metric, diff, holds, beyond_noise}] for the rows present in `table`."""
    checks = []
    for name, better, worse, metric in DIRECTIONS:
        if better not in table or worse not in table:
            continue
        a, b = table[better]["summary"][metric], table[worse]["summary"][metric]
        diff = a["mean"] - b["mean"]
        noise = float(np.hypot(a["std"], b["std"]))
        checks.append({"name": name, "better": better, "worse": worse, "metric": metric, "diff": diff,
                       "holds": bool(diff > 0), "noise": noise,
                       "beyond_noise": bool(diff > noise) if a["n"] > 1 or b["n"] > 1 else None})
    return checks


def build_table(results, final, seeds):
    """{row: {"seeds": {seed: summary}, "summary": aggregate, "entries": {seed: probe entry}}}."""
    table = {}
    for variant, by_seed in final.items():
        entries = {s: results[model_name(variant, s)] for s in by_seed}
        per_seed = {s: summary(e) for s, e in entries.items()}
        table[variant] = {"seeds": per_seed, "summary": aggregate(per_seed), "entries": entries}
    for base in BASELINES:
        names = [n for n in results if n == base or n.startswith(base + ".s")]
        if names:
            entries = {n: results[n] for n in names}
            per_seed = {n: summary(e) for n, e in entries.items()}
            table[base] = {"seeds": per_seed, "summary": aggregate(per_seed), "entries": entries}
    return table


METRICS = ("speech", "audio", "music", "pitch", "overall")


def render_markdown(table, checks, command):
    lines = ["# Ablations", "", f"Command: `{command}`", "",
             "Scores are test-set probe metrics (fractions; mean ± std over seeds, n = seeds). "
             f"pitch = mean of {', '.join(PITCH_TASKS)}; overall = mean of the domain means.", "",
             "| variant | n | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for row, data in table.items():
        s = data["summary"]
        n = next(iter(s.values()))["n"]
        cells = [f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" if n > 1 else f"{s[m]['mean']:.3f}" for m in METRICS]
        lines.append(f"| {row} | {n} | " + " | ".join(cells) + " |")
    lines += ["", "## The paper's directions", "", "| direction | metric | difference | holds | beyond seed noise |",
              "|---|---|---|---|---|"]
    for c in checks:
        noise = "n/a (1 seed)" if c["beyond_noise"] is None else ("yes" if c["beyond_noise"] else
                                                                   f"no (noise {c['noise']:.3f})")
        lines.append(f"| {c['name']} ({c['better']} vs {c['worse']}) | {c['metric']} | {c['diff']:+.3f} | "
                     f"{'yes' if c['holds'] else 'NO'} | {noise} |")
    return "\n".join(lines) + "\n"


def plot(table, path):
    """Grouped bars: one group per metric, one bar per row, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(table)
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(METRICS), 4.5))
    for i, row in enumerate(rows):
        s = table[row]["summary"]
        xs = np.arange(len(METRICS)) + i * width
        ax.bar(xs, [s[m]["mean"] for m in METRICS], width, yerr=[s[m]["std"] for m in METRICS], label=row,
               capsize=2)
    ax.set_xticks(np.arange(len(METRICS)) + width * (len(rows) - 1) / 2)
    ax.set_xticklabels(METRICS)
    ax.set_ylabel("test score")
    ax.set_title("Ablations (probe scores, mean ± std over seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
