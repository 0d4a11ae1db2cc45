"""Teacher layers fitted as sparse (`--sparse_layers`, docs/method.md §3.3): parsing, the specs
and loss keys it sets, the kept-head check of a continuation, and a distill run that pools the
layer's scale, changes only that head's loss, refuses a changed resume and is read back by the
fidelity verb."""
import json
import math
import types

import pytest
import torch

from usad2.distill import build
from usad2.distill.config import TrainConfig
from usad2.distill.task import DistillTask, TargetStats
from usad2.errors import ConfigError


def _cfg(**kw):
    return TrainConfig(train_dir="t", out_dir="o", **kw)


def test_the_option_is_canonical_and_a_malformed_value_names_it():
    assert _cfg(sparse_layers=" yamnet=6 ; other=2,1").sparse_layers == "other=2,1;yamnet=6"
    assert _cfg(sparse_layers={"yamnet": [6]}).sparse_layers == "yamnet=6"
    assert _cfg().sparse_layers is None
    with pytest.raises(ConfigError, match="--sparse_layers: 'yamnet:6' is not NAME=LAYER"):
        _cfg(sparse_layers="yamnet:6")
    with pytest.raises(ConfigError, match="--sparse_layers: layers of 'yamnet' are not integers"):
        _cfg(sparse_layers="yamnet=six")


def test_specs_get_the_layers_they_distil_others_are_ignored_and_a_non_card_refused(caplog):
    def specs():
        return [types.SimpleNamespace(name="yamnet", teacher_layers=[2, 4, 6], span=None),
                types.SimpleNamespace(name="speech_embedding", teacher_layers=[2, 3, 4], span=None)]

    got = build.with_teacher_options(specs(), _cfg(sparse_layers="yamnet=6,7;resemblyzer=1"))
    assert [s.sparse_layers for s in got] == [(6,), ()]
    assert "yamnet layers [7] are not distilled in this run" in caplog.text
    assert "names resemblyzer, not among this run's teachers" in caplog.text
    with pytest.raises(ConfigError, match="--sparse_layers names yamnt"):
        build.with_teacher_options(specs(), _cfg(sparse_layers="yamnt=6"))


def _spec(name, layers, prob_layers=(), sparse=()):
    import fractions

    from usad2.distill.task import TeacherSpec

    return TeacherSpec(name, "audio", fractions.Fraction(25), 0.0, [(k, k) for k in layers], {k: 3 for k in layers},
                       tuple(prob_layers), sparse_layers=tuple(sparse))


def test_a_sparse_layer_is_fitted_by_squared_error_on_one_scale_per_layer():
    spec = _spec("relu", [1, 2], sparse=[2])
    task = DistillTask([spec], 25)  # probability_targets raw: only --sparse_layers makes squared keys
    dense_key, sparse_key = spec.keys()
    assert task.squared_keys == {sparse_key}
    stats = TargetStats({k: {"mean": torch.zeros(3), "std": torch.tensor([0.001, 0.1, 1.0])} for k in spec.keys()})
    stats.pool_std(task.squared_keys)
    task.stats = stats
    rms = math.sqrt((0.001 ** 2 + 0.1 ** 2 + 1.0) / 3)
    assert stats.stats[sparse_key]["std"].tolist() == pytest.approx([rms] * 3, rel=1e-6)
    assert stats.stats[dense_key]["std"].tolist() == pytest.approx([0.001, 0.1, 1.0])
    # a rare activation of the quiet dimension: per-dimension scaling makes it an outlier of
    # 1000 standard deviations, one scale per layer keeps it at its share of the layer's variance
    target = torch.tensor([[[1.0, 0.0, 0.0]]])
    lengths = torch.tensor([1])
    preds = {k: torch.zeros(1, 1, 3) for k in spec.keys()}
    batch = types.SimpleNamespace(utts=["u"], domains=["audio"])
    terms = {k: float(v[0, 0]) for _, k, v, _ in task.head_terms(preds, lengths, {"relu": ([target, target], lengths)},
                                                                 batch)}
    zero_cos = -math.log(0.5)
    assert terms[sparse_key] == pytest.approx((1 / rms) ** 2 / 3 + zero_cos, rel=1e-5)
    assert terms[dense_key] == pytest.approx(1000.0 / 3 + zero_cos, rel=1e-4)


def test_a_sparse_layer_that_bce_fits_as_posteriors_is_refused():
    spec = _spec("pitchy", [1, 2], prob_layers=[2], sparse=[2])
    with pytest.raises(ConfigError, match="--sparse_layers names pitchy:L2, which --probability_targets bce"):
        DistillTask([spec], 25, probability_targets="bce")
    assert DistillTask([spec], 25, probability_targets="mse").squared_keys == {"pitchy:L2"}


def test_kept_heads_fitted_the_other_way_are_named():
    init = {"config": {"sparse_layers": "yamnet=6"}, "head_inputs": {"yamnet:L6": 6, "yamnet:L4": 4}}
    inputs = {"yamnet:L6": 6, "yamnet:L4": 4}
    problems = build.kept_head_changes(init, ["yamnet:L4", "yamnet:L6"], inputs, set(), _cfg())
    assert problems == ["--sparse_layers names the kept heads yamnet:L6 in one of the two runs only: they change units"]
    same = _cfg(sparse_layers="yamnet=6")
    assert build.kept_head_changes(init, ["yamnet:L4", "yamnet:L6"], inputs, set(), same) == []


def test_distill_with_a_sparse_layer_pools_its_scale_and_changes_only_its_loss(tmp_path):
    from test_distill_task import make_data_dir, tiny_distill_runner, write_cards
    from usad2.bin.fidelity import fidelity
    from usad2.distill.fidelity import teacher_specs_of

    torch.set_num_threads(1)
    cards = write_cards(str(tmp_path / "cards"))
    train = make_data_dir(tmp_path / "train", n_per_domain=4, seed=1)
    dev = make_data_dir(tmp_path / "dev", n_per_domain=1, seed=2)

    run = tiny_distill_runner(tmp_path, train, cards)

    run("plain")
    run("sparse", "--sparse_layers", "tiny_speech=2")
    assert "tiny_speech: layers [2] fitted as sparse" in (tmp_path / "sparse" / "distill.log").read_text()
    ckpt_path = tmp_path / "sparse" / "checkpoints" / "last.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    plain = torch.load(tmp_path / "plain" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["config"]["sparse_layers"] == "tiny_speech=2"
    pooled, per_dim = ckpt["target_stats"]["tiny_speech:L2"]["std"], plain["target_stats"]["tiny_speech:L2"]["std"]
    assert torch.allclose(pooled, per_dim.pow(2).mean().sqrt().expand_as(pooled))
    assert per_dim.std() > 0  # the pooling changed something
    assert torch.equal(ckpt["target_stats"]["tiny_speech:L1"]["std"], plain["target_stats"]["tiny_speech:L1"]["std"])

    def first_step(out):
        with open(tmp_path / out / "metrics.jsonl") as f:
            return json.loads(f.readline())

    a, b = first_step("plain"), first_step("sparse")
    # the same weights and batch: only the sparse head's loss differs
    for key in (k for k in a if k.startswith("loss/")):
        if key == "loss/tiny_speech:L2":
            assert b[key] != pytest.approx(a[key]), key
        else:
            assert b[key] == pytest.approx(a[key]), key
    with pytest.raises(ConfigError, match="sparse_layers"):
        run("sparse", "--sparse_layers", "tiny_speech=1", steps="3")
    assert {s.name: s.sparse_layers for s in teacher_specs_of(ckpt, str(ckpt_path))} == \
        {"tiny_speech": (2,), "tiny_audio": (), "tiny_music": ()}
    doc = fidelity(str(ckpt_path), dev, "", str(tmp_path / "fid"), progress=False)
    assert all(h["frames"] > 0 for h in doc["heads"])
