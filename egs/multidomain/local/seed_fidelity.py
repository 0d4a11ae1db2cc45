"""Per-head fidelity over seeds: for each RUN given, the `usad2.bin.fidelity` outputs PREFIX<RUN>_s<seed>/
fidelity.json are averaged per head (mean ± std over seeds, ddof 0). Used for RESULTS.md section 1:

    python local/seed_fidelity.py exp/abl/fid_ h2400 h2400plus
"""
import glob
import json
import sys

import numpy as np


def mean_std(heads, unit, key):
    """`mean ± std` over seeds of one fidelity number of one head."""
    xs = [h["student"][unit][key] for h in heads]
    return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}"


prefix = sys.argv[1]
for run in sys.argv[2:]:
    files = sorted(glob.glob(f"{prefix}{run}_s[0-9]/fidelity.json"))
    rows = {}
    for f in files:
        for h in json.load(open(f))["heads"]:
            rows.setdefault((h["teacher"], h["teacher_layer"], h["student_layer"]), []).append(h)
    print(f"\n{run} ({len(files)} seeds)\n")
    print("| teacher | layer | student layer | EV | EV std | cos | cos std |")
    print("|---|---|---|---|---|---|---|")
    for (t, l, s), hs in rows.items():
        cells = [mean_std(hs, u, k) for u, k in (("orig", "ev"), ("std", "ev"), ("orig", "cos"), ("std", "cos"))]
        print(f"| {t} | L{l} | {s} | " + " | ".join(cells) + " |")
