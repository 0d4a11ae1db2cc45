"""Domain-aware teacher weights (docs/method.md §3.5).

Over the M domain-specific teachers, teacher m gets ω/(ω+M-1) when its domain equals the
utterance's and 1/(ω+M-1) otherwise. An "unknown" domain (or ω = 1) gives every teacher 1/M,
USAD v1's uniform average. Teachers of domain "any" get a fixed weight (default 1) everywhere.
"""
from usad2.errors import ConfigError

UTTERANCE_DOMAINS = ("speech", "audio", "music", "unknown")


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


def weight_table(teacher_domains, omega=10.0, any_weight=1.0):
    """{utterance domain: weights} for every domain: the (D, M) lookup the trainer uses."""
    return {d: teacher_weights(teacher_domains, d, omega, any_weight) for d in UTTERANCE_DOMAINS}
