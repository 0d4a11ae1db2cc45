"""Sparse layer-to-layer mapping (docs/method.md §3.1): which layers of a teacher are distilled and
which student layers predict them. It lives with the teacher cards (their `distill_layers` override
it) because both the offline targets (usad2.targets: the teacher layers to extract) and
distillation (usad2.distill: the layer pairs) read it.

With K pairs, for k = 1..K student layer floor(k·L_S/K) predicts teacher layer floor(k·L_T/K).
A teacher card may list its distilled layers explicitly (a teacher with fewer than K layers,
or parallel output heads such as basic-pitch's contour/note/onset); then K = len(list) for that
teacher and the student layers are floor(k·L_S/K) for k = 1..K.
"""
from usad2.errors import ConfigError


def student_layers(num_student_layers, k):
    """Student layers (1-based) for K mapped pairs."""
    if k < 1 or k > num_student_layers:
        raise ConfigError(f"cannot map K={k} pairs onto a {num_student_layers}-layer student")
    return [(i * num_student_layers) // k for i in range(1, k + 1)]


def teacher_layers(num_teacher_layers, k, name="teacher"):
    """Teacher layers (1-based) for K mapped pairs; an error when the teacher is too shallow."""
    if k > num_teacher_layers:
        raise ConfigError(f"{name} has {num_teacher_layers} layers, fewer than K={k}: "
                          f"list its distilled layers explicitly in its card (distill_layers)")
    return [(i * num_teacher_layers) // k for i in range(1, k + 1)]


def layer_pairs(num_student_layers, num_teacher_layers, k=4, explicit=None, name="teacher"):
    """[(student layer, teacher layer), ...] for one teacher.

    `explicit`: the card's distill_layers, which overrides K for this teacher.
    """
    if explicit:
        explicit = [int(x) for x in explicit]
        for layer in explicit:
            if not 1 <= layer <= num_teacher_layers:
                raise ConfigError(f"{name}: distilled layer {layer} outside 1..{num_teacher_layers}")
        return list(zip(student_layers(num_student_layers, len(explicit)), explicit))
    return list(zip(student_layers(num_student_layers, k), teacher_layers(num_teacher_layers, k, name)))
