"""Teacher frames averaged over a window (`--teacher_spans`, docs/method.md §3.4): parsing, the
specs it sets, and a distill run that records it, changes only its teacher's loss, refuses a
changed resume and is read back by the fidelity verb."""
import json

import pytest
import torch

from usad2.distill.align import format_teacher_spans, parse_teacher_spans
from usad2.errors import ConfigError


def test_parse_and_format_are_canonical():
    assert parse_teacher_spans(None) == {} and format_teacher_spans({}) is None
    spans = parse_teacher_spans(" yamnet=0.975 , other=.5")
    assert spans == {"yamnet": 0.975, "other": 0.5}
    assert format_teacher_spans(spans) == "other=0.5,yamnet=0.975"
    assert parse_teacher_spans(format_teacher_spans(spans)) == spans
    assert parse_teacher_spans({"yamnet": "0.975"}) == {"yamnet": 0.975}


@pytest.mark.parametrize("text, message", [
    ("yamnet", "is not NAME=SECONDS"),
    ("yamnet=long", "span of .yamnet. is not a number"),
    ("yamnet=0", "positive number of seconds"),
    ("yamnet=nan", "positive number of seconds"),
    ("yamnet=1,yamnet=2", "given twice"),
])
def test_bad_spans_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_teacher_spans(text)


def test_specs_get_their_span_a_card_outside_the_run_is_ignored_and_a_non_card_refused():
    from types import SimpleNamespace

    from usad2.distill.build import with_spans
    from usad2.distill.config import TrainConfig

    def specs():
        return [SimpleNamespace(name=n, span=None) for n in ("yamnet", "speech_embedding")]

    cfg = TrainConfig(train_dir="t", out_dir="o", teacher_spans="yamnet=0.975,resemblyzer=1")
    assert [s.span for s in with_spans(specs(), cfg)] == [0.975, None]
    cfg = TrainConfig(train_dir="t", out_dir="o", teacher_spans="yamnt=0.975")
    with pytest.raises(ConfigError, match="yamnt"):
        with_spans(specs(), cfg)
    assert [s.span for s in with_spans(specs(), cfg, check_cards=False)] == [None, None]


def test_distill_with_a_span_changes_only_that_teachers_loss_and_records_it(tmp_path):
    from test_distill_task import make_data_dir, tiny_distill_runner, write_cards
    from usad2.bin.fidelity import fidelity
    from usad2.distill.fidelity import teacher_specs_of

    cards = write_cards(str(tmp_path / "cards"))
    train = make_data_dir(tmp_path / "train", n_per_domain=4, seed=1)
    dev = make_data_dir(tmp_path / "dev", n_per_domain=1, seed=2)

    run = tiny_distill_runner(tmp_path, train, cards)

    run("plain")
    run("span", "--teacher_spans", "tiny_speech=0.2")  # tiny_speech: 25 Hz frames, each over 0.2 s
    assert "tiny_speech: the student's predictions are averaged over each teacher frame's 0.2 s" in \
        (tmp_path / "span" / "distill.log").read_text()
    ckpt_path = tmp_path / "span" / "checkpoints" / "last.pt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["config"]["teacher_spans"] == "tiny_speech=0.2"

    def first_step(out):
        with open(tmp_path / out / "metrics.jsonl") as f:
            return json.loads(f.readline())

    plain, span = first_step("plain"), first_step("span")
    # the same initial weights and batch: only tiny_speech's heads see other predictions
    for key in (k for k in plain if k.startswith("loss/")):
        if key.startswith("loss/tiny_speech"):
            assert span[key] != pytest.approx(plain[key]), key
        else:
            assert span[key] == pytest.approx(plain[key]), key
    with pytest.raises(ConfigError, match="teacher_spans"):
        run("span", "--teacher_spans", "tiny_speech=0.3", steps="3")
    assert {s.name: s.span for s in teacher_specs_of(ckpt, str(ckpt_path))} == \
        {"tiny_speech": 0.2, "tiny_audio": None, "tiny_music": None}
    doc = fidelity(str(ckpt_path), dev, "", str(tmp_path / "fid"), progress=False)
    assert {h["teacher"] for h in doc["heads"]} == {"tiny_speech", "tiny_audio", "tiny_music"}
    assert all(h["frames"] > 0 for h in doc["heads"])
