"""Seed table of a probe run: models named `<name>_s<seed>` are grouped by name (mean ± std over seeds,
ddof 0), other models are single rows; prints a markdown table and issue 12's acceptance checks,
and saves a bar plot. Used for RESULTS.md section 1:

    python local/seed_table.py exp/default3/probe/results.json results/default_run_task_scores.png
"""
import json
import sys
import matplotlib
import numpy as np
matplotlib.use("Agg")
import matplotlib.pyplot as plt

res = json.load(open(sys.argv[1]))
tasks = [("drum_class", "audio"), ("sound_class", "audio"), ("chord_quality", "music"), ("frame_pitch_class", "music"),
         ("instrument_family", "music"), ("note_activity", "music"), ("pitch_class", "music"), ("style", "music"),
         ("language", "speech"), ("word", "speech"), ("word_category", "speech")]
order = ["student", "student_heads", "student_stage1", "basic_pitch", "resemblyzer", "speech_embedding", "yamnet",
         "teachers_concat", "fbank", "random_init"]
groups = {}
for name, r in res.items():
    base = name.rsplit("_s", 1)[0] if name.rsplit("_s", 1)[-1].isdigit() else name
    groups.setdefault(base, []).append(r)
def value(r, c):
    return r["_domain_mean"][c] if c in ("speech", "audio", "music") else r["_mean"] if c == "overall" else r[c]
cols = [t for t, _ in tasks] + ["audio", "music", "speech", "overall"]
stats = {g: {c: (100 * np.mean([value(r, c) for r in rs]), 100 * np.std([value(r, c) for r in rs]), len(rs))
             for c in cols} for g, rs in groups.items()}
names = [g for g in order if g in stats]
print("| task | domain | " + " | ".join(f"{g} (n={stats[g]['overall'][2]})" for g in names) + " |")
print("|---|---|" + "---|" * len(names))
for c in cols:
    dom = dict(tasks).get(c, "")
    best = max(stats[g][c][0] for g in names)
    cells = []
    for g in names:
        m, s, n = stats[g][c]
        txt = f"{m:.1f} ± {s:.1f}" if n > 1 else f"{m:.1f}"
        cells.append(f"**{txt}**" if m == best else txt)
    label = c if dom else f"**{c} mean**" if c != "overall" else "**overall mean**"
    print(f"| {label} | {dom} | " + " | ".join(cells) + " |")
# acceptance of issue 12
st = stats["student"]
teachers = [t for t in ("basic_pitch", "resemblyzer", "speech_embedding", "yamnet") if t in stats]
bt = max(teachers, key=lambda t: stats[t]["overall"][0])
concat = f"; 95% of concat {0.95 * stats['teachers_concat']['overall'][0]:.1f}" if "teachers_concat" in stats else ""
print(f"\nstudent overall {st['overall'][0]:.1f} vs best teacher {bt} {stats[bt]['overall'][0]:.1f}{concat}")
for t in ("chord_quality", "frame_pitch_class", "style"):
    b = max(teachers, key=lambda x: stats[x][t][0])
    print(f"{t}: student {st[t][0]:.1f} vs 80% of {b} {0.8 * stats[b][t][0]:.1f}")
for d in ("audio", "music", "speech") if "fbank" in stats and "random_init" in stats else ():
    print(f"{d}: student {st[d][0]:.1f} fbank {stats['fbank'][d][0]:.1f} random {stats['random_init'][d][0]:.1f}")
fig, ax = plt.subplots(figsize=(14, 4.5))
w = 0.8 / len(names)
for i, g in enumerate(names):
    ax.bar(np.arange(len(cols)) + i * w, [stats[g][c][0] for c in cols], w,
           yerr=[stats[g][c][1] for c in cols], label=g, capsize=1.5)
ax.set_xticks(np.arange(len(cols)) + 0.4, cols, rotation=30, ha="right")
ax.set_ylabel("test score (%)")
ax.set_title("default recipe (2400 + 400 steps), three seeds (± std); single models: teachers, concat, fbank")
ax.legend(ncol=5, fontsize=7)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
