"""Run a task suite over probed models; write results.json and details.json.

results.json (docs/formats.md#6-probe-and-report-results):
`{model: {task: score, ..., "_domain_mean": {domain: score}, "_mean": score}}`, score = the
task's metric on test (a fraction in [0, 1]). `_mean` is the mean of the domain means, so each
domain counts equally however many tasks it has.
details.json holds, per model and task: every metric on test and dev, the chosen
hyper-parameters, the learned layer weights with the layer names, class and example counts,
the chance score (the task metric of always predicting the majority training class; for mAP
the mean test positive rate) and the label file used.

Single-label tasks: classes are the training labels; a dev/test example whose label never
occurs in training stays in the test set and counts as an error (it gets a class of its own
that no probe predicts). A task whose test labels are mostly unseen in training (a held-out
speaker set, say) cannot be scored by a classifier and is skipped with a log line, as is one
with fewer than two training classes. Multi-label tasks ignore unseen test tokens.
Frame-level tasks keep the frames of at most `max_frame_utts` utterances per data dir and
train on at most `max_frames` of their training frames (seeded random subsets); they are
scored on at most `max_frames` dev and test frames each.
"""
import dataclasses
import json
import logging
import os

import numpy as np
import torch

from usad2.data.datadir import load_data_dir
from usad2.errors import ConfigError
from usad2.probe import tasks as tasks_mod
from usad2.probe.cache import extract_features
from usad2.probe.heads import NAMED_READOUTS, ProbeConfig, fit_probe
from usad2.probe.metrics import chance_score
from usad2.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)
MIN_SEEN_FRACTION = 0.5
FRAME_BATCH_FACTOR = 8  # frames are many and alike: larger batches keep frame probes CPU-fast


class TaskSkipped(Exception):
    """A task that cannot be probed on this data (reason in the message)."""


def _frame_utts(available, data_root, max_utts, seed):
    """{data dir name: utterances whose frames are kept} for the frame-level tasks.

    At most `max_utts` per data dir (a seeded random subset): frames of wide, fast teachers
    would otherwise fill gigabytes (100 Hz x 768 dims for an hour of music is 0.5 GB in fp16).
    """
    need = {}
    for task, label in available:
        if task.level != "frame":
            continue
        for split in task.splits().values():
            table = load_data_dir(os.path.join(data_root, split)).table(label) or {}
            need.setdefault(split, set()).update(table)
    rng = np.random.default_rng(seed)
    for split, utts in need.items():
        utts = sorted(utts)
        if len(utts) > max_utts:
            utts = sorted(rng.choice(utts, max_utts, replace=False).tolist())
        need[split] = utts
    return need


def _utterance_examples(feats, table):
    utts = [u for u in feats.utt_ids if u in table]
    rows = feats.rows(utts)
    return [torch.from_numpy(x[rows]) for x in feats.pooled], [table[u] for u in utts]


def _frame_examples(feats, table, task, where, max_frames, seed):
    layers, labels = [[] for _ in feats.pooled], []
    for utt in sorted(u for u in table if u in feats.frames):
        per_layer = feats.frames[utt]
        notes = tasks_mod.read_notes(table[utt], utt, where)
        times = tasks_mod.frame_times(per_layer[0].shape[0], feats.frame_rate, feats.frame_offset)
        labels.extend((lab,) for lab in tasks_mod.frame_labels(notes, times, task.frame_target))
        for l, x in enumerate(per_layer):
            layers[l].append(x)
    if not labels:
        return [torch.zeros(0, x.shape[1]) for x in feats.pooled], []
    keep = np.arange(len(labels))
    if len(keep) > max_frames:
        keep = np.sort(np.random.default_rng(seed).choice(len(keep), max_frames, replace=False))
    layers = [torch.from_numpy(np.concatenate(parts)[keep].astype(np.float32)) for parts in layers]
    return layers, [labels[i] for i in keep]


def _encode_single(train_labels, others):
    classes = sorted({" ".join(lab) for lab in train_labels})
    index = {c: i for i, c in enumerate(classes)}
    unseen = {}
    encoded = [torch.tensor([index[" ".join(lab)] for lab in train_labels])]
    for labels in others:
        ids = []
        for lab in (" ".join(lab) for lab in labels):
            if lab not in index:
                unseen.setdefault(lab, len(classes) + len(unseen))
            ids.append(index.get(lab, unseen.get(lab)))
        encoded.append(torch.tensor(ids, dtype=torch.long))
    return classes, encoded


def _encode_multi(train_labels, others):
    classes = sorted({tok for lab in train_labels for tok in lab})
    index = {c: i for i, c in enumerate(classes)}

    def hot(labels):
        y = torch.zeros(len(labels), len(classes))
        for i, lab in enumerate(labels):
            for tok in lab:
                if tok in index:
                    y[i, index[tok]] = 1.0
        return y
    return classes, [hot(train_labels)] + [hot(labels) for labels in others]


def probe_task(task, label, feats, data_root, config, max_frames=20000):
    """Train / select / test one task on one model's FeatureSets ({split name: FeatureSet})."""
    data = {}
    for role, split in task.splits().items():
        table = load_data_dir(os.path.join(data_root, split)).table(label) or {}
        where = os.path.join(data_root, split, label)
        if task.level == "frame":
            data[role] = _frame_examples(feats[split], table, task, where, max_frames, config.seed)
        else:
            data[role] = _utterance_examples(feats[split], table)
        if not data[role][1]:
            raise TaskSkipped(f"no labelled examples in {where}")
    labels = [data[r][1] for r in ("train", "dev", "test")]
    if task.multi_label:
        classes, (ytr, ydev, yte) = _encode_multi(labels[0], labels[1:])
    else:
        classes, (ytr, ydev, yte) = _encode_single(labels[0], labels[1:])
        seen = float((yte < len(classes)).float().mean())
        if seen < MIN_SEEN_FRACTION:
            raise TaskSkipped(f"only {seen:.0%} of the test examples have a label seen in training")
    if len(classes) < 2:
        raise TaskSkipped(f"fewer than two classes in training ({classes})")
    if task.level == "frame":
        config = dataclasses.replace(config, batch_size=config.batch_size * FRAME_BATCH_FACTOR)
    result = fit_probe((data["train"][0], ytr), (data["dev"][0], ydev), (data["test"][0], yte),
                       len(classes), config, task.metric, task.multi_label, feats[task.train].groups)
    result.update({"score": result["test"][task.metric], "metric": task.metric, "domain": task.domain,
                   "level": task.level, "label_file": label, "num_classes": len(classes),
                   "num_examples": {r: len(data[r][1]) for r in data}})
    result["chance"] = chance_score(ytr.numpy(), yte.numpy(), task.metric)
    return result


def aggregate(task_scores, domains):
    """{task: score} -> results.json entry with _domain_mean and _mean (mean of domain means)."""
    entry = dict(task_scores)
    by_domain = {}
    for task, score in task_scores.items():
        by_domain.setdefault(domains[task], []).append(score)
    entry["_domain_mean"] = {d: float(np.mean(s)) for d, s in sorted(by_domain.items())}
    entry["_mean"] = float(np.mean(list(entry["_domain_mean"].values()))) if by_domain else float("nan")
    return entry


def _layer_range(model):
    """How many layers `--layer N` indexes: all, or a group's (each part of a ConcatProbe)."""
    if model.groups is None:
        return model.num_layers
    return max(model.groups.count(g) for g in set(model.groups))


def probe_model(model, available, data_root, cache_root, config, max_frames=20000, force=False,
                max_frame_utts=200, fresh=None):
    """{task name: details} for one probed model over the available tasks.

    `fresh`: cache paths already (re)computed in this run (see extract_features).
    """
    if config.layer not in NAMED_READOUTS and not 0 <= int(config.layer) < _layer_range(model):
        raise ConfigError(f"--layer {config.layer}: model {model.name} has layers 0..{_layer_range(model) - 1} "
                          f"({', '.join(model.names())})")
    splits = sorted({s for task, _ in available for s in task.splits().values()})
    frame_utts = _frame_utts(available, data_root, max_frame_utts, config.seed)
    feats = {s: extract_features(model, os.path.join(data_root, s), cache_root,
                                 sorted(frame_utts.get(s, ())), force=force, fresh=fresh) for s in splits}
    details = {}
    for task, label in available:
        try:
            result = probe_task(task, label, feats, data_root, config, max_frames)
        except TaskSkipped as e:
            logger.info("%s / %s skipped: %s", model.name, task.name, e)
            continue
        result["layer_names"] = feats[task.train].layer_names
        details[task.name] = result
        weights = ", ".join(f"{n}={w:.2f}" for n, w in zip(result["layer_names"], result["layer_weights"]))
        logger.info("%s / %s: %s %.4f (chance %.4f; %s; layers %s)", model.name, task.name, task.metric,
                    result["score"], result.get("chance", float("nan")), result["hparams"], weights)
    return details


def run_probe(models, data_root, tasks, out_dir, config=ProbeConfig(), max_frames=20000, force=False,
              max_frame_utts=200, cache_root=None):
    """Probe every model on every available task; write and return (results, details).

    Features are cached under `cache_root` (default <out_dir>/features).
    """
    available = tasks_mod.available_tasks(tasks, data_root)
    cache_root = cache_root or os.path.join(out_dir, "features")
    domains = {task.name: task.domain for task, _ in available}
    results, details, fresh = {}, {}, set()
    for model in models:
        details[model.name] = probe_model(model, available, data_root, cache_root, config, max_frames, force,
                                          max_frame_utts, fresh)
        results[model.name] = aggregate({t: d["score"] for t, d in details[model.name].items()}, domains)
    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(results, indent=2, sort_keys=True) + "\n")
    atomic_write_text(os.path.join(out_dir, "details.json"), json.dumps(details, indent=2, sort_keys=True) + "\n")
    return results, details
