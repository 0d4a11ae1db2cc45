"""Read the distillation trainer's per-step log into loss curves per teacher.

Sources, first found wins: `<dir>/metrics.jsonl` (usad2.distill.trainer: one JSON object a step
with "step", "loss" and "loss/<teacher>:L<layer>" per head), `<dir>/train_log.jsonl` (the same
keys, or "loss/<teacher>/<layer>"), or a path to such a file. A teacher's curve is the
unweighted mean of its heads' losses at each step; dev entries ("dev/...") are kept apart.
Lines that are not JSON objects (a run killed mid-write) are skipped with a warning.
"""
import json
import logging
import os

logger = logging.getLogger(__name__)
LOG_NAMES = ("metrics.jsonl", "train_log.jsonl")


def find_log(path):
    """The per-step JSON-lines log at or inside `path`, or None."""
    if path and os.path.isfile(path):
        return path
    for name in LOG_NAMES:
        candidate = os.path.join(path or "", name)
        if path and os.path.isfile(candidate):
            return candidate
    return None


def _teacher_of(key):
    """'loss/yamnet:L4' or 'loss/yamnet/4' -> 'yamnet'; None for other keys."""
    if not key.startswith("loss/"):
        return None
    rest = key[len("loss/"):]
    if ":L" in rest:
        return rest.rpartition(":L")[0]
    return rest.split("/")[0] if "/" in rest else rest


def read_train_log(path):
    """{"total": [(step, loss)], "teachers": {teacher: [(step, mean head loss)]}, "dev": [(step, loss)]}."""
    curves = {"total": [], "teachers": {}, "dev": []}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            try:
                rec = json.loads(line)
            except ValueError:
                logger.warning("%s:%d: not a JSON line, skipped", path, number)
                continue
            if not isinstance(rec, dict) or "step" not in rec:
                continue
            step = int(rec["step"])
            if isinstance(rec.get("loss"), (int, float)):
                curves["total"].append((step, float(rec["loss"])))
            if isinstance(rec.get("dev/loss"), (int, float)):
                curves["dev"].append((step, float(rec["dev/loss"])))
            per_teacher = {}
            for key, value in rec.items():
                teacher = _teacher_of(key)
                if teacher and isinstance(value, (int, float)):
                    per_teacher.setdefault(teacher, []).append(float(value))
            for teacher, values in per_teacher.items():
                curves["teachers"].setdefault(teacher, []).append((step, sum(values) / len(values)))
    return curves
