"""How inferred domains compare with labels: the confusion table and the agreement.

Shared by `usad2.domains.infer` (its summary) and the stage-9 report (`usad2.report.domains`).
"""
import numpy as np

from usad2.domains.mapping import DOMAINS


def confusion_table(labels, posteriors):
    """({label: {inferred domain: count}}, agreement or None) over utterances with a known label.

    `labels` {utt: speech|audio|music|unknown} and `posteriors` {utt: (p_speech, p_audio,
    p_music)}; the inferred domain is the posterior's argmax; `unknown` labels are skipped.
    """
    table = {}
    for utt, label in sorted(labels.items()):
        if label == "unknown" or utt not in posteriors:
            continue
        guess = DOMAINS[int(np.argmax(posteriors[utt]))]
        table.setdefault(label, dict.fromkeys(DOMAINS, 0))[guess] += 1
    total = sum(sum(row.values()) for row in table.values())
    agree = sum(row.get(label, 0) for label, row in table.items())
    return table, (agree / total if total else None)
