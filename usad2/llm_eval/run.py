"""One LLM evaluation: per model, train projector + LoRA on train, answer every test question, score.

Outputs under `out_dir` (docs/formats.md#7-llm-evaluation-results):
- `results.json` in the probe's schema, `{model: {task: score, "_domain_mean": {domain: score},
  "_mean": score}}`: a classification task's score is its normalised exact match on test,
  `caption` its chrF; `_domain_mean` holds the classification domains and `open-ended` (the
  caption); `_mean` is the mean of the CLASSIFICATION domains' means, as the probe's `_mean` over
  the same tasks, so the two rankings compare; `_outside_label_set` is the fraction of all
  classification answers that are no training label of their task.
- `details.json`: per model and task the score, metric, domain, chance (majority answer), the
  outside-label-set rate, example counts, the learned layer weights and names, tokens per second,
  steps, training and evaluation seconds.
- `RESULTS.md` (the per-task table of usad2.report.tables) and `plots/task_scores.png`.
- `<model>/`: checkpoints, metrics.jsonl, tensorboard, `predictions.jsonl` (utt, task, answer,
  prediction) and `scores.json` with a `.done` stamp, so a rerun skips a finished model and
  resumes an interrupted one.
"""
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time

import numpy as np
import torch

from usad2.llm_eval import score as score_mod
from usad2.llm_eval.data import CAPTION
from usad2.llm_eval.decoder import end_token_id, load_llm
from usad2.llm_eval.model import AudioLLM
from usad2.llm_eval.tokens import PooledModel, layer_stats, token_features
from usad2.llm_eval.train import LLMTrainer
from usad2.utils.atomic import atomic_write_text
from usad2.utils.precision import autocast
from usad2.utils.stamp import fingerprint, is_done, mark_done

logger = logging.getLogger(__name__)
OPEN_DOMAIN = "open-ended"


@dataclasses.dataclass(frozen=True)
class LLMEvalConfig:
    pool_stride: float = 0.2        # seconds per audio token (about 1 / pool_stride tokens per second)
    layer: object = "weighted"      # "weighted" or a 0-based layer index (as the probe's --layer)
    # 1000 steps at 1e-3: the demo measurement where the LM reads the audio (egs/multidomain/RESULTS.md
    # section 9.1); 120 steps left every model at chance
    max_steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 30
    seed: int = 0
    save_every: int = 50
    keep_last: int = 2
    eval_batch_size: int = 32
    precision: str = "fp32"         # resolved: fp32 or bf16
    max_answer_tokens: int = 64


def _tensors(frames, utt):
    return [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in frames[utt]]


def _max_new_tokens(model, examples, cap):
    longest = {}
    for ex in examples:
        longest[ex.task] = max(longest.get(ex.task, 0), len(model._ids(" " + ex.answer)))
    return {task: min(cap, n + 2) for task, n in longest.items()}


def _answer_all(model, examples, frames, cfg, limits):
    """Greedy predictions for `examples` (batched by task and audio length), in their order."""
    order = sorted(range(len(examples)), key=lambda i: (examples[i].task, frames[examples[i].utt][0].shape[0]))
    preds = [None] * len(examples)
    model.eval()
    for start in range(0, len(order), cfg.eval_batch_size):
        idx = order[start:start + cfg.eval_batch_size]
        tasks = {examples[i].task for i in idx}
        limit = max(limits.get(t, 8) for t in tasks)
        with autocast(cfg.precision, model.mean0.device):
            answers = model.generate([_tensors(frames, examples[i].utt) for i in idx],
                                     [examples[i].question for i in idx], limit)
        for i, a in zip(idx, answers):
            preds[i] = a
    return preds


def evaluate_model(probed, taskset, llm_dir, llm_identity, out_dir, cache_root, cfg, force=False, fresh=None,
                   progress=True, device="cpu"):
    """{task: details} of one probed model (trained, answered and scored, or read when stamped)."""
    pooled = PooledModel(probed, cfg.pool_stride)
    model_dir = os.path.join(out_dir, probed.name)
    identity = {"model": pooled.cache_identity(), "llm": llm_identity, "config": dataclasses.asdict(cfg),
                "tasks": taskset.label_sets, "data": {r: os.path.abspath(d) for r, d in taskset.data_dirs.items()}}
    fp = fingerprint(identity, inputs=list(taskset.data_dirs.values()))
    scores_path = os.path.join(model_dir, "scores.json")
    if not force and is_done(model_dir, fp) and os.path.isfile(scores_path):
        logger.info("llm_eval: %s is up to date in %s", probed.name, model_dir)
        with open(scores_path, encoding="utf-8") as f:
            return json.load(f)
    if force:  # train from scratch: a resume would continue the old run
        shutil.rmtree(os.path.join(model_dir, "checkpoints"), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(model_dir, "metrics.jsonl"))
    os.makedirs(model_dir, exist_ok=True)
    frames = {}
    for role in ("train", "test"):
        part, _ = token_features(pooled, taskset.data_dirs[role], cache_root, force=force, fresh=fresh)
        frames[role] = part
    stats = layer_stats(frames["train"], pooled.num_layers)
    torch.manual_seed(cfg.seed)
    lm, tokenizer = load_llm(llm_dir)
    model = AudioLLM(lm, tokenizer, [m.shape[1] for m, _ in stats], stats, end_token_id(tokenizer), cfg.layer)
    model.to(device)
    train = taskset.examples["train"]

    def batch(indices):
        chosen = [train[i] for i in indices]
        audio = [_tensors(frames["train"], ex.utt) for ex in chosen]
        seconds = sum(a[0].shape[0] for a in audio) / pooled.frame_rate
        return audio, [ex.question for ex in chosen], [ex.answer for ex in chosen], seconds

    t0 = time.time()
    identity_train = {k: v for k, v in identity.items() if k != "data"}
    LLMTrainer(model, batch, len(train), model_dir, json.loads(json.dumps(identity_train, default=str)),
               cfg.max_steps, cfg.batch_size, cfg.lr, cfg.warmup, cfg.seed, cfg.save_every, cfg.keep_last,
               cfg.precision, progress).run()
    train_seconds, t1 = time.time() - t0, time.time()
    test = taskset.examples["test"]
    preds = _answer_all(model, test, frames["test"], cfg, _max_new_tokens(model, train, cfg.max_answer_tokens))
    eval_seconds = time.time() - t1
    lines = [json.dumps({"utt": ex.utt, "task": ex.task, "answer": ex.answer, "prediction": p}, ensure_ascii=False)
             for ex, p in zip(test, preds)]
    atomic_write_text(os.path.join(model_dir, "predictions.jsonl"), "\n".join(lines) + "\n")
    common = {"layer_names": pooled.names(), "layer_weights": model.layer_weights(),
              "tokens_per_second": pooled.frame_rate, "steps": cfg.max_steps, "train_seconds": train_seconds,
              "eval_seconds": eval_seconds, "level": "utterance"}
    details = {}
    for task in list(taskset.domains) + ([CAPTION] if any(ex.task == CAPTION for ex in test) else []):
        pick = [i for i, ex in enumerate(test) if ex.task == task]
        p, r = [preds[i] for i in pick], [test[i].answer for i in pick]
        n_train = sum(ex.task == task for ex in train)
        if task == CAPTION:
            entry = {"score": score_mod.chrf(p, r), "metric": "chrf", "domain": OPEN_DOMAIN, "chance": None}
        else:
            s = score_mod.classification_scores(p, r, taskset.label_sets[task])
            chance = score_mod.majority_chance([ex.answer for ex in train if ex.task == task], r)
            entry = {"score": s["exact_match"], "metric": "exact_match", "domain": taskset.domains[task],
                     "outside_label_set": s["outside_label_set"], "chance": chance}
        details[task] = {**entry, **common, "num_examples": {"train": n_train, "test": len(pick)}}
        logger.info("llm_eval: %s / %s: %s %.4f%s", probed.name, task, entry["metric"], entry["score"],
                    f" (outside label set {entry['outside_label_set']:.3f})" if "outside_label_set" in entry else "")
    atomic_write_text(scores_path, json.dumps(details, indent=2, sort_keys=True) + "\n")
    mark_done(model_dir, fp, {"model": probed.name})
    return details


def aggregate(details):
    """results.json entry of one model's details (see the module docstring)."""
    from usad2.probe.run import aggregate as probe_aggregate

    classes = {t: d for t, d in details.items() if d["metric"] != "chrf"}
    entry = probe_aggregate({t: d["score"] for t, d in classes.items()}, {t: d["domain"] for t, d in classes.items()})
    for task, d in details.items():
        if d["metric"] == "chrf":
            entry[task] = d["score"]
            entry["_domain_mean"][OPEN_DOMAIN] = d["score"]
    counts = [d["num_examples"]["test"] for d in classes.values()]
    outside = [d["outside_label_set"] * n for d, n in zip(classes.values(), counts)]
    entry["_outside_label_set"] = float(sum(outside) / max(1, sum(counts)))
    return entry


def write_outputs(results, details, out_dir, title=""):
    """results.json, details.json, RESULTS.md (per-task table) and plots/task_scores.png."""
    from usad2.report import plots, tables

    atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(results, indent=2, sort_keys=True) + "\n")
    atomic_write_text(os.path.join(out_dir, "details.json"), json.dumps(details, indent=2, sort_keys=True) + "\n")
    models = tables.order_models(results)
    rows = [(label, scores) for label, _, scores, *_ in tables.table_rows(results, details)]
    os.makedirs(os.path.join(out_dir, "plots"), exist_ok=True)
    plots.task_bars(results, models, rows, os.path.join(out_dir, "plots", "task_scores.png"))
    outside = " | ".join(f"{100 * results[m]['_outside_label_set']:.1f}" for m in models)
    text = [f"# {title or 'LLM-based evaluation'}", "",
            "Frozen encoder -> linear projector -> causal LM with LoRA (usad2.llm_eval). Test scores in percent: "
            "normalised exact match of the generated answer per classification task, chrF for `caption`; "
            "chance = always answering the majority training label. `overall mean` = mean of the "
            "classification domains' means (the caption is shown apart).", "",
            tables.results_table(results, details, models),
            "| answers outside the label set (%) | " + " | ".join(models) + " |",
            "|---|" + "---|" * len(models), f"| all classification tasks | {outside} |", "",
            "![task scores](plots/task_scores.png)", ""]
    atomic_write_text(os.path.join(out_dir, "RESULTS.md"), "\n".join(text))


def run_llm_eval(models, taskset, llm_dir, llm_identity, out_dir, cache_root=None, cfg=LLMEvalConfig(),
                 force=False, progress=True, device="cpu"):
    """Evaluate every ProbedModel; write the outputs; return (results, details)."""
    cache_root = cache_root or os.path.join(out_dir, "features")
    results, details, fresh = {}, {}, set()
    for probed in models:
        details[probed.name] = evaluate_model(probed, taskset, llm_dir, llm_identity, out_dir, cache_root, cfg,
                                              force, fresh, progress, device)
        results[probed.name] = aggregate(details[probed.name])
        logger.info("llm_eval: %s: mean %.4f, outside label set %.4f", probed.name, results[probed.name]["_mean"],
                    results[probed.name]["_outside_label_set"])
        write_outputs(results, details, out_dir)  # after each model: a long run shows what it has so far
    return results, details
