"""Domain weights and the loss against hand computations (issue 5 acceptance)."""
import math

import pytest
import torch

from usad2.distill.loss import frame_loss
from usad2.distill.weighting import teacher_weights
from usad2.errors import ConfigError


def test_m3_weights_sum_to_one_with_one_match():
    w = teacher_weights(["speech", "audio", "music"], "audio", omega=10)
    assert w == pytest.approx([1 / 12, 10 / 12, 1 / 12])
    assert sum(w) == pytest.approx(1.0)


def test_m2_and_m5():
    assert teacher_weights(["speech", "music"], "music", omega=10) == pytest.approx([1 / 11, 10 / 11])
    w = teacher_weights(["speech", "audio", "music", "speech", "audio"], "speech", omega=10)
    # two speech teachers both match: 10/14 each, the others 1/14
    assert w == pytest.approx([10 / 14, 1 / 14, 1 / 14, 10 / 14, 1 / 14])


def test_no_match_and_unknown_and_omega_one():
    assert teacher_weights(["speech", "audio"], "music", omega=10) == pytest.approx([1 / 11, 1 / 11])
    assert teacher_weights(["speech", "audio", "music"], "unknown", omega=10) == pytest.approx([1 / 3] * 3)
    assert teacher_weights(["speech", "audio", "music"], "speech", omega=1) == pytest.approx([1 / 3] * 3)


def test_any_domain_teacher_fixed_weight():
    # stage 2 (docs/method.md#4-stage-2-plus-models): Whisper (speech, M = 1) gets 1 on speech
    # and 1/omega elsewhere; AF3 (any) 1
    assert teacher_weights(["speech", "any"], "speech", omega=10) == pytest.approx([1.0, 1.0])
    assert teacher_weights(["speech", "any"], "music", omega=10) == pytest.approx([1 / 10, 1.0])
    assert teacher_weights(["speech", "any"], "audio", any_weight=0.5) == pytest.approx([0.1, 0.5])


def test_bad_domain_rejected():
    with pytest.raises(ConfigError, match="noise"):
        teacher_weights(["speech"], "noise")


def test_loss_on_known_tensors_with_padding():
    pred = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    target = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    total = frame_loss(pred, target, mask)
    # frame 0: identical -> l1 0, cos 1; frame 1: l1 (2+2)/2 = 2, cos 0; frame 2 padded.
    expected0 = -math.log(1 / (1 + math.exp(-1)))
    expected1 = 2 + math.log(2)
    assert total[0].tolist() == pytest.approx([expected0, expected1, 0.0], rel=1e-6)


def test_bernoulli_frame_loss_is_the_kl_to_the_teacher_posterior():
    import math

    import torch

    from usad2.distill.loss import bernoulli_frame_loss

    p = torch.tensor([[[0.1, 0.9], [0.5, 0.02]]])
    mask = torch.tensor([[True, False]])
    exact = bernoulli_frame_loss(torch.logit(p), p, torch.ones(1, 2, dtype=torch.bool))
    assert exact.abs().max() < 1e-5  # the teacher's own posterior costs nothing
    off = bernoulli_frame_loss(torch.zeros(1, 2, 2), p, mask)  # the head says 0.5 everywhere
    kl = lambda a, b: a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))
    assert float(off[0, 0]) == pytest.approx((kl(0.1, 0.5) + kl(0.9, 0.5)) / 2, rel=1e-4)
    assert float(off[0, 1]) == 0.0  # padding


# ---- soft domains (issue 16): w_m = Σ_d p(d) w_m(d) ------------------------------------------

def test_one_hot_posteriors_give_exactly_the_label_weights():
    from usad2.distill.weighting import posterior_weights, weight_table
    for teachers in (["speech", "audio", "music"], ["speech", "any"], ["music", "speech", "audio", "music"]):
        table = weight_table(teachers, omega=10.0, any_weight=0.7)
        for k, domain in enumerate(("speech", "audio", "music")):
            one_hot = tuple(1.0 if j == k else 0.0 for j in range(3))
            assert posterior_weights(table, one_hot) == table[domain]  # bit-identical, not approx


def test_posterior_weights_are_the_expectation_of_the_rule():
    from usad2.distill.weighting import posterior_weights, utterance_weights, weight_table
    table = weight_table(["speech", "audio", "music", "any"], omega=10.0, any_weight=1.0)
    p = (0.6, 0.1, 0.3)
    w = posterior_weights(table, p)
    # by hand: match 10/12, mismatch 1/12
    assert w[0] == pytest.approx(0.6 * 10 / 12 + 0.4 / 12)
    assert w[1] == pytest.approx(0.1 * 10 / 12 + 0.9 / 12)
    assert w[2] == pytest.approx(0.3 * 10 / 12 + 0.7 / 12)
    assert w[3] == 1.0  # domain "any": the fixed weight whatever the posterior
    assert sum(w[:3]) == pytest.approx(1.0)  # the specific weights still sum to 1
    # rounded file values (sum 0.9995) are renormalised; labels still go through the table
    assert posterior_weights(table, (0.5995, 0.1, 0.3)) == pytest.approx(
        posterior_weights(table, (0.5995 / 0.9995, 0.1 / 0.9995, 0.3 / 0.9995)))
    assert utterance_weights(table, "unknown") == table["unknown"]
    assert utterance_weights(table, p) == w


def test_bad_posteriors_rejected():
    from usad2.distill.weighting import posterior_weights, utterance_weights, weight_table
    table = weight_table(["speech", "audio", "music"])
    for bad in ((0.5, 0.5), (1.2, -0.1, -0.1), (0.0, 0.0, 0.0)):
        with pytest.raises(ConfigError, match="domain posterior"):
            posterior_weights(table, bad)
    with pytest.raises(ConfigError, match="'noise'"):
        utterance_weights(table, "noise")


def test_cosine_matches_torch_in_value_and_gradient_zero_vectors_included():
    import torch.nn.functional as F

    from usad2.distill.loss import cosine

    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 7, 40, generator=g)
    b = torch.randn(3, 7, 40, generator=g)
    a[0, 0] = 0.0  # a silent frame: cos 0, no NaN in value or gradient
    b[1, 2] = 0.0
    x1, x2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    ours, ref = cosine(x1, b), F.cosine_similarity(x2, b, dim=-1, eps=1e-8)
    assert ours[0, 0] == 0 and ours[1, 2] == 0
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    (ours * torch.arange(7.0)).sum().backward()
    (ref * torch.arange(7.0)).sum().backward()
    assert torch.isfinite(x1.grad).all()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-6, rtol=1e-5)
