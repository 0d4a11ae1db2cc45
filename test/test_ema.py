"""`--ema_decay`: the moving average of the weights (usad2.distill.ema) and how the trainer saves it.

The average must leave training itself alone (the optimizer's weights are those of the run without
it), be what checkpoints hand on (export, stage-2 --init), and resume exactly.
"""
import os

import pytest
import torch

from test_trainer import argv, corpus, losses  # noqa: F401 (corpus: the fixture)
from usad2.bin.distill import main
from usad2.distill.config import TrainConfig
from usad2.distill.ema import WeightAverage
from usad2.errors import ConfigError
from usad2.models.export import export_from_checkpoint, load_export

torch.set_num_threads(1)


def _ckpt(out, name="last.pt"):
    return torch.load(os.path.join(out, "checkpoints", name), weights_only=True)


def test_average_by_hand_is_the_bias_corrected_exponential_average():
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)  # the initial weights never enter the average
    avg = WeightAverage(layer, decay=0.5)
    assert avg.decay_at(0) == 0.0 and avg.decay_at(50) == pytest.approx(0.5)
    values = [3.0, -1.0, 2.0, 2.0]
    for value in values:
        with torch.no_grad():
            layer.weight.fill_(value)
        avg.update(layer)
    weights = [0.5 ** (len(values) - 1 - s) for s in range(len(values))]  # d^(t - s)
    expected = sum(w * v for w, v in zip(weights, values)) / sum(weights)
    assert avg.updates == 4
    assert torch.allclose(avg.shadow["weight"], torch.full((1, 2), expected))
    with avg.swapped_in(layer):
        assert torch.allclose(layer.weight, torch.full((1, 2), expected))
    assert torch.equal(layer.weight, torch.full((1, 2), 2.0))  # its own weights are back


def test_decay_outside_its_range_and_fsdp_are_refused():
    with pytest.raises(ConfigError, match="--ema_decay must be in"):
        TrainConfig(train_dir="t", out_dir="o", ema_decay=1.0)
    with pytest.raises(ConfigError, match="not supported with --fsdp"):
        TrainConfig(train_dir="t", out_dir="o", ema_decay=0.99, fsdp=True)
    with pytest.raises(ValueError):
        WeightAverage(torch.nn.Linear(1, 1), 0.0)


def test_training_is_unchanged_and_checkpoints_hand_on_the_average(corpus, tmp_path):
    steps = 12
    plain, averaged = str(tmp_path / "plain"), str(tmp_path / "ema")
    main(argv(corpus, plain, steps, "--dev_every", "6"))
    main(argv(corpus, averaged, steps, "--dev_every", "6", "--ema_decay", "0.9"))
    a, b = losses(plain), losses(averaged)
    assert [a[s]["loss"] for s in a] == [b[s]["loss"] for s in a]  # the average does not touch training
    ref, ckpt = _ckpt(plain), _ckpt(averaged)
    assert ckpt["ema_updates"] == steps and "train_model" not in ref
    for key, value in ref["model"].items():
        assert torch.equal(ckpt["train_model"][key], value), key
    for key, value in ref["heads"].items():
        assert torch.equal(ckpt["train_heads"][key], value), key
    moved = [k for k, v in ckpt["model"].items()
             if v.is_floating_point() and not torch.equal(v, ckpt["train_model"][k])]
    assert len(moved) > 10
    assert a[6]["dev/loss"] != b[6]["dev/loss"]  # the dev loss is the average's
    export = str(tmp_path / "model.pt")
    export_from_checkpoint(ckpt, export)
    encoder = load_export(export).state_dict()
    for key, value in ckpt["model"].items():
        assert torch.equal(encoder[key], value), key


def test_resume_continues_the_average_exactly(corpus, tmp_path):
    steps = 12
    ref, resumed = str(tmp_path / "ref"), str(tmp_path / "resumed")
    args = ("--save_every", "3", "--ema_decay", "0.8")
    main(argv(corpus, ref, steps, *args, dev=False))
    main(argv(corpus, resumed, steps, *args, dev=False))
    ckpt_dir = os.path.join(resumed, "checkpoints")
    for name in ("step_00000009.pt", "step_00000012.pt", "last.pt", "best.pt"):
        if os.path.exists(os.path.join(ckpt_dir, name)):
            os.remove(os.path.join(ckpt_dir, name))
    main(argv(corpus, resumed, steps, *args, dev=False))  # resumes from step 6
    a, b = _ckpt(ref), _ckpt(resumed)
    assert b["ema_updates"] == a["ema_updates"] == steps
    for part in ("model", "heads", "train_model", "train_heads"):
        for key, value in a[part].items():
            assert torch.equal(b[part][key], value), (part, key)


def test_stage2_starts_from_the_average(corpus, tmp_path):
    stage1 = str(tmp_path / "stage1")
    main(argv(corpus, stage1, 4, "--ema_decay", "0.9", dev=False))
    plus = str(tmp_path / "plus")
    main(argv(corpus, plus, 1, "--init", os.path.join(stage1, "checkpoints", "last.pt"),
              "--stage2_teachers", "tiny_music", "--lr", "1e-12", dev=False))
    src, ckpt = _ckpt(stage1), _ckpt(plus)
    for key, value in ckpt["model"].items():
        assert torch.allclose(value, src["model"][key], atol=1e-6), key
    assert any(not torch.allclose(src["model"][k], src["train_model"][k]) for k in src["model"])
