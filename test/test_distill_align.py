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


# --------------------------------------------------------------- teacher frames averaged over a span
YAMNET_RATE = fractions.Fraction(25, 2)


def span_means_by_hand(pred, n, s_rate, s_offset, t_rate, t_offset, span, num_out):
    """Per teacher frame: the mean of the valid student frames whose centre lies within its span, and their count."""
    out = []
    for k in range(num_out):
        centre = t_offset + k / float(t_rate)
        inside = [j for j in range(n) if abs(s_offset + j / s_rate - centre) <= span / 2 + 1e-9]
        out.append((pred[inside].mean(0) if inside else None, len(inside)))
    return out


def test_span_pooling_averages_the_student_over_each_teacher_window():
    pred = ramp(1, 200)  # 4 s at 50 Hz
    p, t, lengths, mask = align(pred, [200], ramp(1, 50), [50], 50, YAMNET_RATE, span=0.975)
    assert p.shape == t.shape == (1, 50, 2)
    # patch k is centred at 0.08 k s and covers student frames 4k-24 .. 4k+24 (clipped to 0..199)
    for k in (0, 6, 20, 49):
        lo, hi = max(4 * k - 24, 0), min(4 * k + 24, 199)
        assert float(p[0, k, 0]) == pytest.approx((lo + hi) / 2)
    assert mask.all() and lengths.tolist() == [50]


def test_span_pooling_matches_a_loop_with_offsets_and_padding():
    torch.manual_seed(0)
    pred = torch.randn(2, 120, 3)
    for s_off, t_off, span in [(0.01, 0.0, 0.975), (0.0, 0.03, 0.5), (0.02, -0.01, 0.3)]:
        p, _, _, mask = align(pred, [120, 70], torch.zeros(2, 30, 3), [30, 18], 50, YAMNET_RATE,
                              student_offset=s_off, teacher_offset=t_off, span=span)
        for i, n in enumerate((120, 70)):
            half = -(-int(span * 50 * 1000) // 2000)  # ceil(span * 50 / 2)
            for k, (mean, count) in enumerate(span_means_by_hand(pred[i], n, 50, s_off, YAMNET_RATE, t_off, span, 30)):
                counts = k < (30, 18)[i] and count >= min(n, half) and count > 0
                assert bool(mask[i, k]) == counts, (s_off, t_off, span, i, k, count)
                if counts:
                    assert p[i, k].tolist() == pytest.approx(mean.tolist(), abs=1e-5)


def test_span_pooling_counts_windows_with_half_a_span_and_every_frame_of_short_utterances():
    pred = ramp(2, 100)
    # utterance 0: 2 s, 26 patches; patch 25 (centre 2.0 s) holds student frames 76..99 = 24 < 25
    # utterance 1: 0.4 s (20 frames): every patch holds all of them, so every patch counts
    p, _, lengths, mask = align(pred, [100, 20], ramp(2, 26), [26, 5], 50, YAMNET_RATE, span=0.975)
    assert mask[0].tolist() == [True] * 25 + [False]
    assert mask[1].tolist() == [True] * 5 + [False] * 21
    assert lengths.tolist() == [25, 5]
    assert p[1, :5, 0].tolist() == pytest.approx([9.5] * 5)  # frames 20..99 are padding, never averaged in


def test_span_pooling_spreads_each_teacher_frames_gradient_over_its_window():
    pred = torch.zeros(1, 200, 1, requires_grad=True)
    p, _, _, _ = align(pred, [200], torch.zeros(1, 50, 1), [50], 50, YAMNET_RATE, span=0.975)
    p[0, 20, 0].backward()
    grad = pred.grad[0, :, 0]
    assert grad[56:105].tolist() == pytest.approx([1 / 49] * 49)  # frames 80 +- 24
    assert float(grad.sum()) == pytest.approx(1.0) and int((grad != 0).sum()) == 49


def test_span_pooling_still_refuses_frame_counts_that_disagree():
    with pytest.raises(AlignmentError, match="yamnet: utterance u7: 25 teacher frames expected from the student's "
                                             "vs 30 teacher frames"):
        align(ramp(1, 100), [100], ramp(1, 30), [30], 50, YAMNET_RATE, name="yamnet", utts=["u7"], span=0.975)
    align(ramp(1, 100), [100], ramp(1, 26), [26], 50, YAMNET_RATE, span=0.975)  # within one teacher frame
