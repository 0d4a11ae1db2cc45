"""The typed training config of distill (usad2.distill.config): one place for every default and
check, the command line and YAML files made from it, and old checkpoints' dict configs read back."""
import dataclasses

import pytest

from usad2.bin.distill import build_parser, parse_args
from usad2.distill.config import RENAMED, TrainConfig
from usad2.errors import ConfigError

REQUIRED = ["--train_dir", "t", "--out_dir", "o"]


def test_every_field_is_an_option_with_the_fields_default():
    cfg = parse_args(REQUIRED)
    assert cfg == TrainConfig(train_dir="t", out_dir="o")
    assert (cfg.omega, cfg.k, cfg.teachers, cfg.use_weights, cfg.head_hidden) == (10.0, 4, [], True, None)
    helptext = build_parser().format_help()
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name}" in helptext
    assert parse_args(REQUIRED + ["--teachers", "a,b", "--use_weights", "false", "--dropout", "0"]).teachers == ["a", "b"]


@pytest.mark.parametrize("values, message", [
    ({"train_dir": None}, "--train_dir is required"),
    ({"schedule": "step"}, "--schedule must be one of linear, cosine, got 'step'"),
    ({"k": 0}, "--k must be at least 1"),
    ({"omega": 0.0}, "--omega must be positive"),
    ({"teacher_mode": "offline"}, "--teacher_mode offline needs --targets_dir"),
])
def test_bad_values_are_refused_before_anything_runs(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**dict({"train_dir": "t", "out_dir": "o"}, **values))


def test_yaml_values_get_the_same_checks(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("schedule: stepwise\n")  # argparse never checks a default against its choices
    with pytest.raises(ConfigError, match="--schedule must be one of"):
        parse_args(["--config", str(conf)] + REQUIRED)


def test_old_checkpoint_configs_read_back():
    """A config dict saved before the renames and before probability_targets / head_lr_scale existed."""
    old = {"train_data": "dump/raw/train_mix", "dev_data": "dump/raw/dev", "preset": "mini", "out": "exp/a",
           "teachers": ["yamnet"], "teacher_mode": "offline", "targets_dir": "dump/targets", "omega": 5.0,
           "no_longer_an_option": 1}
    cfg = TrainConfig.from_saved(old)
    assert (cfg.train_dir, cfg.dev_dir, cfg.student, cfg.out_dir) == ("dump/raw/train_mix", "dump/raw/dev", "mini",
                                                                      "exp/a")
    assert (cfg.omega, cfg.probability_targets, cfg.head_lr_scale) == (5.0, "raw", 1.0)
    assert TrainConfig.from_saved(cfg.to_dict()) == cfg
    changed = dataclasses.replace(cfg, seed=3, student="small", lr=1.0).identity_changes(cfg)
    assert changed == [("student", "mini", "small"), ("seed", 0, 3)]  # lr is not part of the identity


def test_renamed_spellings_are_the_recipes():
    assert set(RENAMED.values()) <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert not set(RENAMED) & {f.name for f in dataclasses.fields(TrainConfig)}
