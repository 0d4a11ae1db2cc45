"""Layer mapping against hand computations (issue 5 acceptance)."""
import pytest

from usad2.teachers.mapping import layer_pairs, parse_student_layers
from usad2.errors import ConfigError


@pytest.mark.parametrize("ls,lt,expected", [
    (12, 12, [(3, 3), (6, 6), (9, 9), (12, 12)]),
    (12, 24, [(3, 6), (6, 12), (9, 18), (12, 24)]),
    (24, 32, [(6, 8), (12, 16), (18, 24), (24, 32)]),
    (48, 12, [(12, 3), (24, 6), (36, 9), (48, 12)]),
    (12, 5, [(3, 1), (6, 2), (9, 3), (12, 5)]),  # floor(k*5/4) = 1, 2, 3, 5
])
def test_k4_mapping(ls, lt, expected):
    assert layer_pairs(ls, lt, k=4) == expected


def test_k_configurable():
    assert layer_pairs(12, 12, k=2) == [(6, 6), (12, 12)]
    assert layer_pairs(4, 12, k=3) == [(1, 4), (2, 8), (4, 12)]


def test_explicit_layers_override_k():
    # basic-pitch: contour, note, onset -> K = 3 for that teacher
    assert layer_pairs(12, 3, k=4, explicit=[1, 2, 3]) == [(4, 1), (8, 2), (12, 3)]
    assert layer_pairs(2, 3, explicit=[3]) == [(2, 3)]


def test_shallow_teacher_without_list_is_an_error():
    with pytest.raises(ConfigError, match="fewer than K=4"):
        layer_pairs(12, 3, k=4, name="basic_pitch")
    with pytest.raises(ConfigError, match="outside 1..3"):
        layer_pairs(12, 3, explicit=[1, 4])


def test_student_layers_replace_the_student_side_only():
    # basic-pitch (3 explicit layers) on a 4-layer student: 1, 2, 4 by default, 1, 2, 3 when asked
    assert layer_pairs(4, 3, explicit=[1, 2, 3]) == [(1, 1), (2, 2), (4, 3)]
    assert layer_pairs(4, 3, explicit=[1, 2, 3], student=[1, 2, 3]) == [(1, 1), (2, 2), (3, 3)]
    assert layer_pairs(12, 24, k=2, student=[4, 4]) == [(4, 12), (4, 24)]
    with pytest.raises(ConfigError, match="gives basic_pitch 2 student layers"):
        layer_pairs(4, 3, explicit=[1, 2, 3], name="basic_pitch", student=[1, 2])
    with pytest.raises(ConfigError, match="student layer 5 is outside 1..4"):
        layer_pairs(4, 3, explicit=[1, 2, 3], name="basic_pitch", student=[1, 2, 5])


def test_parse_student_layers():
    assert parse_student_layers(None) == {} and parse_student_layers("") == {}
    assert parse_student_layers("basic_pitch=1,2,3; yamnet=2,3,4") == {"basic_pitch": [1, 2, 3],
                                                                        "yamnet": [2, 3, 4]}
    assert parse_student_layers({"basic_pitch": [1, 2, 3]}) == {"basic_pitch": [1, 2, 3]}  # a YAML map
    with pytest.raises(ConfigError, match="'basic_pitch' is not NAME=LAYER"):
        parse_student_layers("basic_pitch")
    with pytest.raises(ConfigError, match="layers of 'yamnet' are not integers"):
        parse_student_layers("yamnet=1,x")
