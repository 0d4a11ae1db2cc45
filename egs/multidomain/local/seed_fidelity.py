"""Per-head fidelity over seeds: for each RUN given, the `usad2.bin.fidelity` outputs PREFIX<RUN>_s<seed>/
fidelity.json are averaged per head (mean ± std over seeds, ddof 0). Used for RESULTS.md section 1:

    python local/seed_fidelity.py exp/abl/fid_ h2400 h2400plus
"""
import glob
import json
import sys

import numpy as np
prefix = sys.argv[1]
for run in sys.argv[2:]:
    rows = {}
    for f in sorted(glob.glob(f"{prefix}{run}_s[0-9]/fidelity.json")):
        for h in json.load(open(f))["heads"]:
            rows.setdefault((h["teacher"], h["teacher_layer"], h["student_layer"]), []).append(h)
    print(f"\n{run} ({len(glob.glob(f'{prefix}{run}_s[0-9]/fidelity.json'))} seeds)\n")
    print("| teacher | layer | student layer | EV | EV std | cos | cos std |")
    print("|---|---|---|---|---|---|---|")
    for (t, l, s), hs in rows.items():
        def ms(unit, key):
            xs = [h["student"][unit][key] for h in hs]
            return f"{np.mean(xs):.3f} ± {np.std(xs):.3f}"
        print(f"| {t} | L{l} | {s} | {ms('orig', 'ev')} | {ms('std', 'ev')} | {ms('orig', 'cos')} | {ms('std', 'cos')} |")
