"""Probe metrics written out by hand (no scikit-learn in the stack): accuracy, macro-F1, mAP.

Conventions (those of scikit-learn's defaults, so numbers compare with published probes):
- `macro_f1` averages the per-class F1 over every class that occurs in the truth or in the
  predictions; a class with no true and no predicted example does not count, and a class
  with precision + recall = 0 scores 0.
- `mean_average_precision` (multi-label) averages, over the classes that have at least one
  positive example, the average precision = mean over the positives of the precision at
  that positive's rank (scores sorted in decreasing order; ties broken by a stable sort of the
  negated scores, i.e. earlier examples first).
"""
import numpy as np


def accuracy(y_true, y_pred):
    """Fraction of examples whose predicted class equals the true class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    return float(np.mean(y_true == y_pred))


def f1_per_class(y_true, y_pred):
    """{class: F1} for every class in y_true or y_pred."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = {}
    for c in np.union1d(y_true, y_pred).tolist():
        tp = int(np.sum((y_true == c) & (y_pred == c)))
        fp = int(np.sum((y_true != c) & (y_pred == c)))
        fn = int(np.sum((y_true == c) & (y_pred != c)))
        scores[c] = 0.0 if tp == 0 else 2.0 * tp / (2 * tp + fp + fn)
    return scores


def macro_f1(y_true, y_pred):
    """Unweighted mean of the per-class F1 (see the module docstring for which classes count)."""
    scores = f1_per_class(y_true, y_pred)
    if not scores:
        return float("nan")
    return float(np.mean(list(scores.values())))


def average_precision(targets, scores):
    """AP of one class: targets (N,) 0/1, scores (N,) higher = more likely; nan without positives."""
    targets, scores = np.asarray(targets).astype(bool), np.asarray(scores, dtype=np.float64)
    positives = int(targets.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = targets[order]
    ranks = np.arange(1, len(hits) + 1)
    precision_at_hit = np.cumsum(hits)[hits] / ranks[hits]
    return float(precision_at_hit.sum() / positives)


def mean_average_precision(targets, scores):
    """mAP over the classes with at least one positive: targets and scores (N, C)."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    aps = [average_precision(targets[:, c], scores[:, c]) for c in range(targets.shape[1])]
    aps = [a for a in aps if not np.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def chance_accuracy(y_train, y_test):
    """Accuracy of always predicting the most frequent training class on the test labels."""
    y_train = np.asarray(y_train)
    if y_train.size == 0:
        return float("nan")
    values, counts = np.unique(y_train, return_counts=True)
    return accuracy(y_test, np.full(len(y_test), values[np.argmax(counts)]))


def chance_score(y_train, y_test, metric):
    """The task metric of a probe that ignores its input, as a floor to read scores against.

    accuracy / macro_f1: always predict the most frequent training class (so macro-F1's floor
    is that class's F1 over the number of classes that occur); map ((N, C) multi-hot): the
    expected AP of a random ranking, i.e. the mean over classes of the test positive rate.
    """
    if metric == "map":
        y_test = np.asarray(y_test)
        rates = y_test.mean(axis=0)
        rates = rates[rates > 0]
        return float(rates.mean()) if rates.size else float("nan")
    y_train = np.asarray(y_train)
    if y_train.size == 0:
        return float("nan")
    values, counts = np.unique(y_train, return_counts=True)
    majority = np.full(len(y_test), values[np.argmax(counts)])
    return accuracy(y_test, majority) if metric == "accuracy" else macro_f1(y_test, majority)


METRICS = ("accuracy", "macro_f1", "map")
