"""Frame-rate alignment for the rate pairs of the issue, against hand computations."""
import fractions

import pytest
import torch

from usad2.distill.align import AlignmentError, align


def ramp(b, t, d=2, start=0.0):
    """(b, t, d) where every feature of frame j equals start + j."""
    return (torch.arange(t, dtype=torch.float32) + start).view(1, t, 1).expand(b, t, d).clone()


def test_50_to_12_5_pools_student_by_4():
    pred = ramp(1, 40)
    target = ramp(1, 10)
    p, t, lengths, mask = align(pred, [40], target, [10], 50, fractions.Fraction(25, 2))
    assert p.shape == (1, 10, 2) and t.shape == (1, 10, 2)
    assert p[0, :, 0].tolist() == pytest.approx([1.5 + 4 * i for i in range(10)])  # mean of 4i..4i+3
    assert lengths.tolist() == [10] and mask.all()


def test_50_to_25_pools_student_by_2_with_partial_group_and_padding():
    pred = ramp(2, 7)
    target = ramp(2, 4)
    p, t, lengths, mask = align(pred, [7, 5], target, [4, 3], 50, 25)
    assert lengths.tolist() == [4, 3]
    assert p[0, :, 0].tolist() == pytest.approx([0.5, 2.5, 4.5, 6.0])  # last group: frame 6 alone
    assert p[1, :3, 0].tolist() == pytest.approx([0.5, 2.5, 4.0])  # padded frame 5 not averaged in
    assert mask.tolist() == [[True] * 4, [True, True, True, False]]


def test_25_to_50_and_50_to_100_pool_teacher_by_2():
    for rs, rt in [(25, 50), (50, 100)]:
        pred = ramp(1, 5)
        target = ramp(1, 10)
        p, t, lengths, _ = align(pred, [5], target, [10], rs, rt)
        assert t[0, :, 0].tolist() == pytest.approx([0.5, 2.5, 4.5, 6.5, 8.5])
        assert torch.equal(p, pred)


def test_50_to_basic_pitch_rate_interpolates_teacher_at_student_times():
    rt = fractions.Fraction(22050, 256)
    n_t = 86  # ~1 s of basic-pitch frames
    times_t = torch.arange(n_t, dtype=torch.float64) / float(rt)
    target = times_t.float().view(1, -1, 1).repeat(1, 1, 3)  # feature = the frame's time
    pred = torch.zeros(1, 50, 3)
    p, t, lengths, mask = align(pred, [50], target, [n_t], 50, rt)
    assert lengths.item() == 50
    assert t[0, :, 0].tolist() == pytest.approx([i / 50 for i in range(50)], abs=1e-6)


def test_interpolation_respects_offsets():
    target = torch.arange(20, dtype=torch.float32).view(1, 20, 1)  # value = teacher frame index
    # teacher 30 Hz starting at 0.1 s; student 50 Hz starting at 0.02 s; 0.7 s of audio
    p, t, lengths, _ = align(torch.zeros(1, 35, 1), [35], target, [20], 50, 30,
                             student_offset=0.02, teacher_offset=0.1)
    expected = [min(max((0.02 + i / 50 - 0.1) * 30, 0), 19) for i in range(int(lengths))]
    assert t[0, : int(lengths), 0].tolist() == pytest.approx(expected, abs=1e-5)


def test_length_mismatch_beyond_tolerance_names_teacher_and_utterance():
    with pytest.raises(AlignmentError, match=r"yamnet: utterance utt7: 20 student frames vs 5"):
        align(ramp(1, 20), [20], ramp(1, 5), [5], 50, 50, name="yamnet", utts=["utt7"])
    # within tolerance (2 frames): cut to the shorter
    p, t, lengths, _ = align(ramp(1, 20), [20], ramp(1, 18), [18], 50, 50)
    assert p.shape[1] == 18 and lengths.item() == 18
