"""Report section on domains (issue 16): inferred vs true domains, and effective teacher weights.

- `confusion_lines(data_dir)`: for a data dir with `utt2domain_post` (usad2.bin.infer_domains),
  the confusion of its labels (utt2domain; `unknown` skipped) against the inferred domain (the
  posterior's argmax) with the agreement, and where the data dir is the demo's mixed set
  (`utt2domain_mix`, the true energy shares) how far the posteriors are from the truth.
- `weight_lines(checkpoint, plot_dir)`: for a training checkpoint, the weight each teacher got
  per training utterance under the run's own rule (its teachers' domains, ω, the any-weight and
  domain source: docs/method.md §3.5), as a summary table and a histogram per teacher.
Both return Markdown lines, empty when their input files do not exist.
"""
import os

import numpy as np

from usad2.data.catalog import resolve_domains
from usad2.data.datadir import load_data_dir
from usad2.distill.weighting import POSTERIOR_DOMAINS, parse_teacher_weights, utterance_weights, weight_table
from usad2.domains.agreement import confusion_table
from usad2.report import plots


def confusion_lines(data_dir):
    """Markdown of the inferred-vs-true comparison of one data dir ([] without utt2domain_post)."""
    if not os.path.isfile(os.path.join(data_dir, "utt2domain_post")):
        return []
    data = load_data_dir(data_dir)
    post = data.table("utt2domain_post")
    lines = [f"### `{data_dir}` ({len(post)} utterances)", ""]
    labels = data.table("utt2domain")
    if labels is not None:
        table, agreement = confusion_table(labels, post)
        if table:
            lines += ["| label \\ inferred | " + " | ".join(POSTERIOR_DOMAINS) + " | agreement |",
                      "|---|" + "---|" * (len(POSTERIOR_DOMAINS) + 1)]
            for label in POSTERIOR_DOMAINS:
                if label in table:
                    row = table[label]
                    lines.append(f"| {label} | " + " | ".join(str(row[d]) for d in POSTERIOR_DOMAINS)
                                 + f" | {row[label] / sum(row.values()):.3f} |")
            lines += ["", f"Agreement of the inferred hard domain with the label: **{agreement:.3f}**.", ""]
    truth = data.table("utt2domain_mix")
    if truth is not None:
        utts = sorted(set(truth) & set(post))
        t = np.array([truth[u] for u in utts])
        p = np.array([post[u] for u in utts])
        tv = float(np.abs(t - p).sum(axis=1).mean() / 2)
        corr = float(np.corrcoef(t[:, 0], p[:, 0])[0, 1]) if len(utts) > 1 and t[:, 0].std() > 0 else float("nan")
        lines += [f"True mixture proportions (utt2domain_mix): mean total-variation distance to the posterior "
                  f"{tv:.3f} (0 = exact, 1 = disjoint); correlation of true and inferred p(speech) {corr:.3f}; "
                  f"mean posterior {_triple(p.mean(axis=0))} vs mean truth {_triple(t.mean(axis=0))} "
                  f"(speech, audio, music).", ""]
    return lines


def _triple(values):
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def effective_weights(teachers, config, data_dir):
    """{teacher name: (N,) weights} over the utterances of `data_dir` under a run's config."""
    data = load_data_dir(data_dir)
    utts = data.utt_ids
    domains = resolve_domains(data, utts, config.get("domain_source", "labels"), data_dir)
    scales = parse_teacher_weights(config.get("teacher_weights"))
    table = weight_table([t["domain"] for t in teachers], float(config.get("omega", 10.0)),
                         float(config.get("any_weight", 1.0)), [scales.get(t["name"], 1.0) for t in teachers])
    rows = np.array([utterance_weights(table, d) for d in domains])
    return {t["name"]: rows[:, m] for m, t in enumerate(teachers)}


def weight_lines(checkpoint, plot_dir):
    """Markdown of the effective teacher weights of a training run ([] without the checkpoint)."""
    import torch

    if not checkpoint or not os.path.isfile(checkpoint):
        return []
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    config, teachers = ckpt.get("config") or {}, ckpt.get("teachers") or []
    train_dir = config.get("train_dir")
    if not teachers or not train_dir or not os.path.isdir(train_dir):
        return [f"No effective weights: `{checkpoint}` names no teachers or its training dir "
                f"`{train_dir}` is not here.", ""]
    weights = effective_weights(teachers, config, train_dir)
    path = plots.weight_histograms(weights, os.path.join(plot_dir, "teacher_weights.png"))
    source = config.get("domain_source", "labels")
    lines = [f"Weight of each teacher per training utterance of `{train_dir}` (domain source `{source}`, "
             f"ω = {config.get('omega', 10.0)}); soft posteriors spread the weights between the label values.", "",
             "| teacher | domain | mean | min | median | max |", "|---|---|---|---|---|---|"]
    for t in teachers:
        w = weights[t["name"]]
        lines.append(f"| {t['name']} | {t['domain']} | {w.mean():.3f} | {w.min():.3f} | {np.median(w):.3f} | "
                     f"{w.max():.3f} |")
    return lines + ["", f"![teacher weights](plots/{os.path.basename(path)})", ""]
