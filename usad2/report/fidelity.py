"""Markdown of a fidelity.json (usad2.bin.fidelity): one row per prediction head.

Used by the fidelity verb for its fidelity.md and by the stage-9 report for its RESULTS.md.
"""
import math

HOW_TO_READ = (
    "How to read: one row per prediction head (teacher layer, predicted from the student layer shown), over all "
    "valid dev frames after rate alignment. EV = explained variance, 1 - SSE / SST around the dev mean pooled "
    "over dimensions (1 = perfect, 0 = no better than the dev mean, < 0 = worse); cos = mean per-frame cosine "
    "similarity of prediction and target. Columns marked std are in standardised units (each dimension divided "
    "by its std, so every dimension counts alike); the others are in the teacher's original units, where "
    "high-variance dimensions dominate. `mean` columns are the mean predictor (each dimension's training mean "
    "at every frame; its standardised cos is 0 by construction): a head whose EV std is not above the mean "
    "predictor's (marked **no**) has learnt nothing of that layer beyond a constant.")


def _num(value):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def fidelity_table(doc):
    """The Markdown table of a fidelity document (the dict written as fidelity.json)."""
    lines = ["| teacher | layer | student layer | frames | EV | EV std | cos | cos std | mean EV | mean EV std | "
             "mean cos | beats mean |", "|" + "---|" * 12]
    for h in doc["heads"]:
        s, m = h["student"], h["mean"]
        better = s["std"]["ev"] > m["std"]["ev"] if not math.isnan(s["std"]["ev"]) else False
        cells = [h["teacher"], f"L{h['teacher_layer']}", str(h["student_layer"]), str(h["frames"]),
                 _num(s["orig"]["ev"]), _num(s["std"]["ev"]), _num(s["orig"]["cos"]), _num(s["std"]["cos"]),
                 _num(m["orig"]["ev"]), _num(m["std"]["ev"]), _num(m["orig"]["cos"]), "yes" if better else "**no**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def fidelity_notes(doc):
    """One line on what the numbers were computed from."""
    return (f"Checkpoint `{doc['checkpoint']}` (step {doc.get('step', '?')}), dev `{doc['dev_dir']}` "
            f"({doc['utterances']} utterances), targets {doc['targets']}; standardised with "
            f"{doc['standardisation']}; mean predictor: {doc['mean_predictor']}.")


def fidelity_markdown(doc, title="Teacher-layer fidelity of the prediction heads", level=1):
    """A whole Markdown section: title, what it was computed from, how to read it, the table."""
    return "\n".join([f"{'#' * level} {title}", "", fidelity_notes(doc), "", HOW_TO_READ, "",
                      fidelity_table(doc)])
