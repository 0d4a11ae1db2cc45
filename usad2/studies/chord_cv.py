"""Chord-quality read-out with many more test clips than the probe's 40: k-fold cross-validation.

    cd egs/multidomain
    python -m usad2.studies.chord_cv --feature_cache exp/probe_features --data_root dump/raw MODEL...

For each model (a feature-cache entry of `usad2.bin.probe`, named by its prefix, e.g. `raw_s0`),
the pooled per-layer means of the train and dev clips that carry utt2chord_quality (360 clips, one
soundfont family) are standardised and read by an L2-regularised multinomial logistic regression
on all layers concatenated; accuracy over 5 folds (stratified by nothing: folds are a seeded
shuffle) with the regularisation chosen on the training part of each fold. Also the probe's split
(train+dev -> test: on the demo corpus 40 clips of a held-out soundfont). Prints one line per
model: CV accuracy ± its binomial standard error, held-out test accuracy. `--label` reads out
another utterance label the same way.

Why: with 40 test clips one clip is 2.5 points and the standard error near 30 % accuracy is 7
points, too coarse to tell a student that holds some harmony from one that holds none.
"""
import glob
import os

import numpy as np
import torch

from usad2.errors import ConfigError
from usad2.probe.cache import entry_name
from usad2.utils.cli import make_parser, run_main


def labels(data_dir, label="chord_quality"):
    path = os.path.join(data_dir, f"utt2{label}")
    with open(path, encoding="utf-8") as f:
        return dict(line.split(maxsplit=1) for line in f if line.strip())


def pooled(cache, prefix, data_dir):
    """(utterance ids, every layer's pooled features side by side) of model `prefix` on `data_dir`."""
    found = glob.glob(os.path.join(cache, f"{prefix}-*", entry_name(data_dir), "pooled.npz"))
    if len(found) != 1:
        raise ConfigError(f"{cache}: {len(found)} feature-cache entries of {prefix!r} on {data_dir} (want "
                          f"exactly one; probe the model on it with --feature_cache {cache} first)")
    with np.load(found[0], allow_pickle=False) as z:
        utts = [str(u) for u in z["utt_ids"]]
        layers = [z[k] for k in sorted((k for k in z.files if k.startswith("layer")), key=lambda k: int(k[5:]))]
    return utts, np.concatenate(layers, axis=1)


def fit_predict(x_tr, y_tr, x_te, num_classes, l2):
    torch.manual_seed(0)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    xt = torch.as_tensor((x_tr - mu) / sd, dtype=torch.float64)
    xe = torch.as_tensor((x_te - mu) / sd, dtype=torch.float64)
    yt = torch.as_tensor(y_tr)
    w = torch.zeros(xt.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * w.square().sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return (xe @ w + b).argmax(1).numpy()


def choose_l2(x, y, num_classes, grid=(1e-3, 1e-2, 1e-1)):
    """The l2 of `grid` with the best accuracy on a held-out fifth of (x, y)."""
    idx = np.random.default_rng(1).permutation(len(y))
    cut = len(y) // 5
    te, tr = idx[:cut], idx[cut:]
    scores = [(fit_predict(x[tr], y[tr], x[te], num_classes, l2) == y[te]).mean() for l2 in grid]
    return grid[int(np.argmax(scores))]


def evaluate(cache, data_root, prefix, folds=5, label="chord_quality"):
    """(CV accuracy, its standard error, CV clips, train+dev -> test accuracy, test clips)."""
    per_split = {}
    for split in ("train", "dev", "test"):
        lab = labels(os.path.join(data_root, split), label)
        utts, x = pooled(cache, prefix, os.path.join(data_root, split))
        keep = [i for i, u in enumerate(utts) if u in lab]
        per_split[split] = (x[keep], [lab[utts[i]] for i in keep])
    classes = sorted({c for _, ys in per_split.values() for c in ys})
    enc = {c: i for i, c in enumerate(classes)}
    x = np.concatenate([per_split["train"][0], per_split["dev"][0]])
    y = np.array([enc[c] for c in per_split["train"][1] + per_split["dev"][1]])
    order = np.random.default_rng(0).permutation(len(y))
    hits = 0
    for k in range(folds):
        te = order[k::folds]
        tr = np.setdiff1d(order, te)
        l2 = choose_l2(x[tr], y[tr], len(classes))
        hits += int((fit_predict(x[tr], y[tr], x[te], len(classes), l2) == y[te]).sum())
    cv = hits / len(y)
    xt, yt = per_split["test"][0], np.array([enc[c] for c in per_split["test"][1]])
    held = (fit_predict(x, y, xt, len(classes), choose_l2(x, y, len(classes))) == yt).mean()
    return cv, np.sqrt(cv * (1 - cv) / len(y)), len(y), held, len(yt)


def main(argv=None):
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--feature_cache", default="exp/probe_features", help="the probe's --feature_cache")
    p.add_argument("--data_root", default="dump/raw", help="holds train/, dev/, test/ with utt2chord_quality")
    p.add_argument("--label", default="chord_quality", help="utt2<label> to read out")
    p.add_argument("models", nargs="+", help="probe model names (their feature-cache entries)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for prefix in args.models:
        cv, se, n, held, nt = evaluate(args.feature_cache, args.data_root, prefix, label=args.label)
        print(f"{prefix:24s} cv {cv:.3f} ± {se:.3f} (n {n})   held-out test {held:.3f} (n {nt})", flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
