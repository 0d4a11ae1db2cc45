"""Per-teacher loss scales (`--teacher_weights`, docs/method.md §3.5): parsing, the weight table,
the loss they give, and a distill run that records, logs and refuses them."""
import json

import pytest
import torch

from test_soft_domain_loss import _Batch, _task, _tensors
from usad2.distill.task import DistillTask
from usad2.distill.weighting import format_teacher_weights, parse_teacher_weights, weight_table
from usad2.errors import ConfigError


def test_parse_and_format_are_canonical():
    assert parse_teacher_weights(None) == {} and format_teacher_weights({}) is None
    scales = parse_teacher_weights(" yamnet=0.5, speech_embedding = 2 ,")
    assert scales == {"yamnet": 0.5, "speech_embedding": 2.0}
    text = format_teacher_weights(scales)
    assert text == "speech_embedding=2.0,yamnet=0.5"
    assert parse_teacher_weights(text) == scales  # a checkpoint's value reads back the same
    assert parse_teacher_weights({"yamnet": 0, "basic_pitch": "1.5"}) == {"yamnet": 0.0, "basic_pitch": 1.5}


@pytest.mark.parametrize("text, message", [
    ("speech_embedding", "is not NAME=SCALE"),
    ("=2", "is not NAME=SCALE"),
    ("yamnet=two", "scale of 'yamnet' is not a number"),
    ("yamnet=-1", "finite number >= 0"),
    ("yamnet=inf", "finite number >= 0"),
    ("yamnet=1,yamnet=2", "'yamnet' is given twice"),
])
def test_bad_scales_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_teacher_weights(text)


def test_scales_multiply_each_teachers_column_of_the_domain_rule():
    domains = ["speech", "audio", "music", "any"]
    plain = weight_table(domains, omega=10.0, any_weight=0.5)
    scaled = weight_table(domains, omega=10.0, any_weight=0.5, scales=[2.0, 1.0, 0.0, 3.0])
    for d in plain:
        assert scaled[d] == pytest.approx([plain[d][0] * 2, plain[d][1], 0.0, plain[d][3] * 3])
    assert scaled["speech"][:3] == pytest.approx([20 / 12, 1 / 12, 0.0])
    with pytest.raises(ConfigError, match="2 teacher scales for 4 teachers"):
        weight_table(domains, scales=[1.0, 2.0])


def test_loss_is_the_scaled_sum_of_each_teachers_loss():
    """loss(s) = Σ_m s_m loss(e_m): a scale multiplies exactly its teacher's share; the per-head
    (unweighted) metrics do not move."""
    base = _task()
    preds, lengths, targets = _tensors(base, seed=3)
    batch = _Batch(["a", "b", "c"], ["speech", (0.2, 0.3, 0.5), "audio"])

    def loss_with(scales):
        task = DistillTask(base.specs, base.student_rate, omega=10.0, any_weight=0.5, scales=scales)
        return task.loss(preds, lengths, targets, batch)

    scales = [2.0, 0.5, 0.0, 1.5]
    total, metrics, _ = loss_with(scales)
    parts = [float(loss_with([float(j == m) for j in range(4)])[0]) for m in range(4)]
    assert float(total) == pytest.approx(sum(s * p for s, p in zip(scales, parts)), rel=1e-6)
    unscaled, plain_metrics, _ = loss_with(None)
    assert float(unscaled) == pytest.approx(sum(parts), rel=1e-6)
    assert {k: v for k, v in metrics.items() if k != "loss"} == \
        {k: v for k, v in plain_metrics.items() if k != "loss"}


def test_report_weights_follow_the_runs_scales(tmp_path):
    from test_report import _domain_dir
    from usad2.report.domains import effective_weights

    data = _domain_dir(tmp_path / "train")
    teachers = [{"name": "speech_embedding", "domain": "speech"}, {"name": "yamnet", "domain": "audio"}]
    config = {"omega": 10.0, "domain_source": "infer"}
    plain = effective_weights(teachers, config, data)
    scaled = effective_weights(teachers, dict(config, teacher_weights="yamnet=0.25"), data)
    assert scaled["speech_embedding"].tolist() == pytest.approx(plain["speech_embedding"].tolist())
    assert scaled["yamnet"].tolist() == pytest.approx((plain["yamnet"] * 0.25).tolist())


def test_distill_records_the_scales_and_refuses_a_changed_resume(tmp_path):
    from test_distill_task import make_data_dir, tiny_distill_runner, write_cards

    cards = write_cards(str(tmp_path / "cards"))
    train = make_data_dir(tmp_path / "train", n_per_domain=4, seed=1)

    run = tiny_distill_runner(tmp_path, train, cards)

    with pytest.raises(ConfigError, match="no_such_teacher"):
        run("typo", "--teacher_weights", "no_such_teacher=2")
    run("plain")
    run("scaled", "--teacher_weights", "tiny_music=0,tiny_speech=3")
    log = (tmp_path / "scaled" / "distill.log").read_text()
    assert "teacher loss scales: tiny_speech x3, tiny_audio x1, tiny_music x0" in log
    ckpt = torch.load(tmp_path / "scaled" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["config"]["teacher_weights"] == "tiny_music=0.0,tiny_speech=3.0"

    def first_step(out):
        with open(tmp_path / out / "metrics.jsonl") as f:
            return json.loads(f.readline())

    plain, scaled = first_step("plain"), first_step("scaled")
    # the same initial weights and batch: per-head losses equal, the total is not
    heads = [k for k in plain if k.startswith("loss/")]
    assert heads and [plain[k] for k in heads] == pytest.approx([scaled[k] for k in heads])
    assert scaled["loss"] != pytest.approx(plain["loss"])
    with pytest.raises(ConfigError, match="teacher_weights"):
        run("scaled", "--teacher_weights", "tiny_speech=2", steps="3")


def test_yaml_config_and_command_line_give_the_same_canonical_value(tmp_path):
    from usad2.bin.distill import parse_args

    conf = tmp_path / "c.yaml"
    conf.write_text("teacher_weights: yamnet=0.5,speech_embedding=2\n")
    base = ["--train_dir", "t", "--out_dir", "o"]
    from_yaml = parse_args(base + ["--config", str(conf)])
    from_cli = parse_args(base + ["--teacher_weights", "speech_embedding=2.0, yamnet=.5"])
    assert from_yaml.teacher_weights == from_cli.teacher_weights == "speech_embedding=2.0,yamnet=0.5"
    assert parse_args(base).teacher_weights is None
    assert parse_args(base + ["--config", str(conf), "--teacher_weights", "yamnet=3"]).teacher_weights == "yamnet=3.0"


def test_a_card_of_the_other_stage_is_ignored_and_a_non_card_is_an_error():
    """The recipe hands one --teacher_weights to stages 1 and 2: resemblyzer (a stage-2 card) in
    stage 1 is ignored; a name that is no card at all is refused."""
    from types import SimpleNamespace

    from usad2.distill.build import loss_scales
    from usad2.distill.config import TrainConfig

    specs = [SimpleNamespace(name=n) for n in ("yamnet", "speech_embedding", "basic_pitch")]
    cfg = TrainConfig(train_dir="t", out_dir="o", teacher_weights="resemblyzer=0.5,speech_embedding=2")
    assert loss_scales(cfg, specs) == [1.0, 2.0, 1.0]  # aligned with the run's teachers, 1 where unnamed
    cfg = TrainConfig(train_dir="t", out_dir="o", teacher_weights="resemblyzr=0.5")
    with pytest.raises(ConfigError, match="names resemblyzr, not among this run's teachers .* no teacher card"):
        loss_scales(cfg, specs)
    assert loss_scales(cfg, specs, check_cards=False) == [1.0, 1.0, 1.0]  # re-reading a finished run
