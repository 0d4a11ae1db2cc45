"""Domain-aware teacher weights (docs/method.md §3.5).

Over the M domain-specific teachers, teacher m gets ω/(ω+M-1) when its domain equals the
utterance's and 1/(ω+M-1) otherwise. An "unknown" domain (or ω = 1) gives every teacher 1/M,
USAD v1's uniform average. Teachers of domain "any" get a fixed weight (default 1) everywhere.

Soft domains: an utterance may carry a posterior (p_speech, p_audio, p_music) instead of a label
(utt2domain_post, `usad2.bin.infer_domains`). Its weights are the expectation of the rule under
that posterior, w_m = Σ_d p(d) w_m(d) (`posterior_weights`). The posterior is divided by its sum
first (files hold rounded decimals); a one-hot posterior gives exactly the hard-label weights
(1.0 * w + 0.0 * ... is w in floating point), so labelled results are unchanged.

Teacher scales (`--teacher_weights NAME=S,...`, a usad2 option beyond the paper): teacher m's
weights are multiplied by S_m on every utterance, after the domain rule, so a teacher's share of
the loss can be raised or lowered without touching the rule (default 1 for every teacher).
"""
import math

from usad2.errors import ConfigError
from usad2.utils.cli import named_numbers

UTTERANCE_DOMAINS = ("speech", "audio", "music", "unknown")
POSTERIOR_DOMAINS = ("speech", "audio", "music")  # the order of a posterior's entries


def teacher_weights(teacher_domains, utterance_domain, omega=10.0, any_weight=1.0):
    """Weights for one utterance, aligned with `teacher_domains` (a list of domains).

    >>> teacher_weights(["speech", "audio", "music"], "speech")
    [0.8333333333333334, 0.08333333333333333, 0.08333333333333333]
    """
    if utterance_domain not in UTTERANCE_DOMAINS:
        raise ConfigError(f"utterance domain {utterance_domain!r} is not one of {UTTERANCE_DOMAINS}")
    if omega <= 0:
        raise ConfigError(f"omega must be positive, got {omega}")
    specific = [d for d in teacher_domains if d != "any"]
    m = len(specific)
    weights = []
    for domain in teacher_domains:
        if domain == "any":
            weights.append(float(any_weight))
        elif utterance_domain == "unknown":
            weights.append(1.0 / m)
        elif domain == utterance_domain:
            weights.append(omega / (omega + m - 1))
        else:
            weights.append(1.0 / (omega + m - 1))
    return weights


def weight_table(teacher_domains, omega=10.0, any_weight=1.0, scales=None):
    """{utterance domain: weights} for every domain: the (D, M) lookup the trainer uses.

    `scales`: one multiplier per teacher (aligned with `teacher_domains`; None = all 1).
    """
    scales = [1.0] * len(teacher_domains) if scales is None else [float(x) for x in scales]
    if len(scales) != len(teacher_domains):
        raise ConfigError(f"{len(scales)} teacher scales for {len(teacher_domains)} teachers")
    return {d: [w * s for w, s in zip(teacher_weights(teacher_domains, d, omega, any_weight), scales)]
            for d in UTTERANCE_DOMAINS}


def parse_teacher_weights(text):
    """"name=2,other=0.5" (or a {name: scale} dict from YAML) -> {name: float}; None/"" -> {}.

    A scale must be a finite number >= 0 (0 keeps the teacher's heads but gives them no loss).
    """
    if not text:
        return {}
    return named_numbers(text, "--teacher_weights", "NAME=SCALE", "scale", lambda x: math.isfinite(x) and x >= 0,
                         "a finite number >= 0")


def format_teacher_weights(scales):
    """{name: scale} -> the canonical "a=2.0,b=0.5" (names sorted), or None when empty."""
    return ",".join(f"{n}={scales[n]!r}" for n in sorted(scales)) or None


def posterior_weights(table, posterior):
    """Σ_d p(d) w(d) from a `weight_table` and a (p_speech, p_audio, p_music) posterior.

    >>> table = weight_table(["speech", "audio", "music"])
    >>> [round(w, 4) for w in posterior_weights(table, (0.5, 0.0, 0.5))]
    [0.4583, 0.0833, 0.4583]
    """
    p = [float(x) for x in posterior]
    if len(p) != len(POSTERIOR_DOMAINS) or any(not 0.0 <= x <= 1.0 for x in p) or sum(p) <= 0:
        raise ConfigError(f"domain posterior {tuple(posterior)!r}: expected 3 probabilities "
                          f"({', '.join(POSTERIOR_DOMAINS)}) in [0, 1] with a positive sum")
    total = sum(p)
    p = [x / total for x in p]
    rows = [table[d] for d in POSTERIOR_DOMAINS]
    weights = []
    for m in range(len(rows[0])):
        if rows[0][m] == rows[1][m] == rows[2][m]:  # "any" teachers (or omega = 1): the value itself
            weights.append(rows[0][m])
        else:
            weights.append(sum(pd * row[m] for pd, row in zip(p, rows)))
    return weights


def utterance_weights(table, domain):
    """The weights of one utterance whose domain is a label or a posterior tuple."""
    if isinstance(domain, str):
        if domain not in table:
            raise ConfigError(f"utterance domain {domain!r} is not one of {UTTERANCE_DOMAINS}")
        return list(table[domain])
    return posterior_weights(table, domain)
