"""Scores of generated answers: normalised exact match, outside-label-set rate, chrF.

Normalisation (both sides): Unicode NFKC, lower case, whitespace collapsed, and quotes and
sentence punctuation (. , ; : ! ?) stripped from the ENDS only, so "Brass." matches "brass"
while labels whose characters matter stay distinct ("C#" vs "C", "minor7" vs "minor").
- exact match: the normalised answer equals the normalised label (the task's score);
- outside label set: the normalised answer is none of the task's normalised training labels
  (the model answered something that is no class at all; XARES-LLM's failure mode to watch);
- chrF (sacrebleu, character n-grams up to 6, beta 2), as a fraction in [0, 1], for the
  open-ended caption task.
"""
import collections
import unicodedata

END_PUNCTUATION = " \t\n.,;:!?\"'`"


def normalise(text):
    text = unicodedata.normalize("NFKC", str(text)).lower()
    return " ".join(text.split()).strip(END_PUNCTUATION)


def classification_scores(predictions, references, label_set):
    """{"exact_match", "outside_label_set", "count"} of one task's answers."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    labels = {normalise(x) for x in label_set}
    pred = [normalise(p) for p in predictions]
    n = max(1, len(pred))
    return {"exact_match": sum(p == normalise(r) for p, r in zip(pred, references)) / n,
            "outside_label_set": sum(p not in labels for p in pred) / n, "count": len(pred)}


def chrf(predictions, references):
    """Corpus chrF of the predictions against one reference each, in [0, 1]."""
    from sacrebleu.metrics import CHRF

    return CHRF().corpus_score(list(predictions), [list(references)]).score / 100.0


def majority_chance(train_answers, test_answers):
    """Exact match of always answering the most frequent training answer."""
    if not test_answers:
        return float("nan")
    top = collections.Counter(normalise(a) for a in train_answers).most_common(1)[0][0]
    return sum(normalise(a) == top for a in test_answers) / len(test_answers)
