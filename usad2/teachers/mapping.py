"""Sparse layer-to-layer mapping (docs/method.md §3.1): which layers of a teacher are distilled and
which student layers predict them. It lives with the teacher cards (their `distill_layers` override
it) because both the offline targets (usad2.targets: the teacher layers to extract) and
distillation (usad2.distill: the layer pairs) read it.

With K pairs, for k = 1..K student layer floor(k·L_S/K) predicts teacher layer floor(k·L_T/K).
A teacher card may list its distilled layers explicitly (a teacher with fewer than K layers,
or parallel output heads such as basic-pitch's contour/note/onset); then K = len(list) for that
teacher and the student layers are floor(k·L_S/K) for k = 1..K.

The student side can be chosen per teacher too (`parse_student_layers`, distill's
`--student_layers "basic_pitch=1,2,3"`): the same teacher layers, predicted from the listed
student layers instead of floor(k·L_S/K), e.g. to keep the top layer for the other teachers.
"""
from usad2.errors import ConfigError
from usad2.utils.cli import named_values


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


def parse_student_layers(text, option="--student_layers"):
    """"name=1,2,3;other=2,3,4" (or a {name: [layers]} dict from YAML) -> {name: [int, ...]}.

    `option` names the command-line option in errors (other per-teacher layer lists share the form).
    """
    if not text:
        return {}
    out = {}
    for name, layers in named_values(text, ";", option, "NAME=LAYER,LAYER,..."):
        values = layers if isinstance(layers, (list, tuple)) else str(layers).split(",")
        try:
            out[name] = [int(v) for v in values if str(v).strip()]
        except ValueError:
            raise ConfigError(f"{option}: layers of {name!r} are not integers: {layers!r}")
    return out


def format_student_layers(chosen):
    """{name: [layers]} -> the canonical "a=1,2,3;b=2,3,4" (names sorted), or None when empty."""
    return ";".join(f"{n}={','.join(map(str, chosen[n]))}" for n in sorted(chosen)) or None


def layer_pairs(num_student_layers, num_teacher_layers, k=4, explicit=None, name="teacher", student=None):
    """[(student layer, teacher layer), ...] for one teacher.

    `explicit`: the card's distill_layers, which overrides K for this teacher.
    `student`: the student layers to use instead of floor(k·L_S/K) (one per teacher layer).
    """
    if explicit:
        explicit = [int(x) for x in explicit]
        for layer in explicit:
            if not 1 <= layer <= num_teacher_layers:
                raise ConfigError(f"{name}: distilled layer {layer} outside 1..{num_teacher_layers}")
        teacher = explicit
    else:
        teacher = teacher_layers(num_teacher_layers, k, name)
    if not student:
        return list(zip(student_layers(num_student_layers, len(teacher)), teacher))
    if len(student) != len(teacher):
        raise ConfigError(f"--student_layers gives {name} {len(student)} student layers {list(student)}, but it "
                          f"distils {len(teacher)} teacher layers {teacher}")
    for layer in student:
        if not 1 <= layer <= num_student_layers:
            raise ConfigError(f"--student_layers: {name}'s student layer {layer} is outside "
                              f"1..{num_student_layers}")
    return list(zip(student, teacher))
