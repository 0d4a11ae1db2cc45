"""Teacher cards: package cards, user overrides, errors naming the file, the teachers command."""
import fractions
import os

import pytest
import torch

from usad2.errors import TeacherError
from usad2.teachers import registry
from usad2.teachers.base import Teacher, TeacherCard, register_family
from usad2.bin import teachers as teachers_cmd

DEMO = ("basic_pitch", "resemblyzer", "speech_embedding", "yamnet")


@pytest.fixture(autouse=True)
def no_user_cards(monkeypatch):
    monkeypatch.delenv(registry.CARD_DIRS_ENV, raising=False)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


TOY_CARD = """name: toy
family: toy_test_family
domain: audio
sample_rate: 16000
frame_rate: 50
num_layers: 2
width: 3
source: {path: "${USAD2_CACHE}/toy/weights.pt"}
options: {scale: 2.0}
"""


@register_family("toy_test_family")
class ToyTeacher(Teacher):
    """A tiny registered family: layer k = k * scale * mean of each 320-sample frame."""

    def __init__(self, card, cache=None, device="cpu"):
        super().__init__(card)
        self.cache = cache

    def _extract(self, wavs, lengths, layers):
        frames = wavs[:, : wavs.shape[1] // 320 * 320].reshape(wavs.shape[0], -1, 320).mean(-1, keepdim=True)
        scale = self.card.options["scale"]
        return [frames.repeat(1, 1, 3) * k * scale for k in layers], lengths // 320


def test_package_cards_listed_and_exact():
    names = registry.list_cards()
    assert set(DEMO) <= set(names)
    bp = registry.load_card("basic_pitch")
    assert bp.frame_rate == fractions.Fraction(22050, 256)
    assert bp.distill_layers == [1, 2, 3] and bp.layer_names == ["contour", "note", "onset"]
    assert [bp.layer_width(k) for k in (1, 2, 3)] == [264, 88, 88]
    domains = {n: registry.load_card(n).domain for n in DEMO}
    assert domains == {"basic_pitch": "music", "resemblyzer": "speech", "speech_embedding": "speech",
                       "yamnet": "audio"}
    for name in DEMO:
        src = registry.load_card(name).source
        assert len(src["sha256"]) == 64 and all(len(f["sha256"]) == 64 for f in src["files"].values())


def test_user_dir_overrides_by_name(tmp_path, monkeypatch):
    text = (registry.PACKAGE_CARD_DIR and open(os.path.join(registry.PACKAGE_CARD_DIR, "yamnet.yaml")).read())
    write(tmp_path / "yamnet.yaml", text.replace("hop_seconds: 0.08", "hop_seconds: 0.16"))
    write(tmp_path / "toy.yaml", TOY_CARD)
    assert registry.load_card("yamnet").options["hop_seconds"] == 0.08
    assert registry.load_card("yamnet", card_dirs=str(tmp_path)).options["hop_seconds"] == 0.16
    monkeypatch.setenv(registry.CARD_DIRS_ENV, str(tmp_path))
    assert registry.load_card("yamnet").options["hop_seconds"] == 0.16
    assert "toy" in registry.list_cards() and set(DEMO) <= set(registry.list_cards())


def test_teacher_cards_option_one_name_everywhere(tmp_path, monkeypatch, capsys):
    """--teacher_cards (default $USAD2_TEACHER_CARDS, dirs joined like the env) in every card-reading
    command; the old --card_dir stops with a usage error naming the new option."""
    from usad2.bin import extract_teacher, fetch_teachers, llm_eval, probe

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    write(first / "toy.yaml", TOY_CARD)
    write(second / "toy2.yaml", TOY_CARD.replace("name: toy", "name: toy2"))
    both = os.pathsep.join([str(first), str(second)])
    assert registry.card_search_path(both) == [str(first), str(second), registry.PACKAGE_CARD_DIR]
    assert registry.load_card("toy2", both).name == "toy2"
    commands = ((extract_teacher.build_parser(), ["--data", "d", "--teacher", "t", "--out", "o"]),
                (fetch_teachers.get_parser(), []), (teachers_cmd.get_parser(), ["list"]),
                (probe.get_parser(), ["--model", "fbank", "--data_root", "d", "--out_dir", "o"]),
                (llm_eval.get_parser(), ["--model", "fbank", "--data_root", "d", "--out_dir", "o"]))
    for parser, required in commands:
        assert parser.get_default("teacher_cards") is None
        assert parser.parse_args([*required, "--teacher_cards", both]).teacher_cards == both
        with pytest.raises(SystemExit) as info:
            parser.parse_args([*required, "--card_dir", str(first)])
        assert info.value.code == 2
        assert "--card_dir was renamed --teacher_cards" in capsys.readouterr().err
    monkeypatch.setenv(registry.CARD_DIRS_ENV, both)
    assert teachers_cmd.get_parser().get_default("teacher_cards") == both
    # probe and llm_eval read the variable when they load cards, so it stays out of their stamps
    assert probe.get_parser().get_default("teacher_cards") is None
    assert llm_eval.get_parser().get_default("teacher_cards") is None
    assert teachers_cmd.main(["list", "--teacher_cards", str(second)]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "toy2" in listed and "toy" not in listed  # the option replaces the env's dirs
    assert teachers_cmd.main(["show", "toy"]) == 0 and "toy_test_family" in capsys.readouterr().out


def test_unknown_name_is_an_error():
    with pytest.raises(TeacherError, match="unknown teacher 'no_such_teacher'.*known: .*yamnet"):
        registry.load_card("no_such_teacher")


@pytest.mark.parametrize("text,message", [
    ("name: bad\nfamily: [unclosed\n", "not valid YAML"),
    ("- just a list\n", "expected a mapping"),
    (TOY_CARD.replace("name: toy", "name: bad").replace("width: 3", "width: 3\ncolour: red"), r"unknown keys \['colour'\]"),
    (TOY_CARD.replace("name: toy", "name: bad").replace("domain: audio", "domain: video"), "domain 'video'"),
    (TOY_CARD.replace("name: toy", "name: bad").replace("num_layers: 2\n", ""), r"missing keys \['num_layers'\]"),
    (TOY_CARD, "must equal the file name 'bad'"),
])
def test_bad_card_error_names_the_file(tmp_path, text, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(TeacherError, match=message) as info:
        registry.load_card("bad", card_dirs=[tmp_path])
    assert str(path) in str(info.value)


def test_register_family_builds_with_overrides(tmp_path):
    write(tmp_path / "toy.yaml", TOY_CARD)
    card = registry.load_card("toy", card_dirs=[tmp_path])
    assert registry.source_files(card, cache=str(tmp_path / "c")) == {"checkpoint": str(tmp_path / "c/toy/weights.pt")}
    teacher = registry.build_teacher("toy", cache=str(tmp_path), card_dirs=[tmp_path],
                                     checkpoint=tmp_path / "w.pt", scale=3.0)
    assert isinstance(teacher, ToyTeacher)
    assert teacher.card.source["path"] == str(tmp_path / "w.pt") and card.source["path"].startswith("${USAD2_CACHE}")
    outs, lens = teacher.extract(torch.ones(2, 960), torch.tensor([960, 640]), [2])
    assert outs[0].shape == (2, 3, 3) and torch.allclose(outs[0], torch.full((2, 3, 3), 6.0))
    assert lens.tolist() == [3, 2]


def test_unknown_family_is_an_error(tmp_path):
    write(tmp_path / "odd.yaml", TOY_CARD.replace("name: toy", "name: odd").replace("toy_test_family", "nonesuch"))
    with pytest.raises(TeacherError, match="unknown teacher family 'nonesuch'"):
        registry.build_teacher("odd", card_dirs=[tmp_path])


def test_family_mapping_points_at_modules():
    for family in ("speech_embedding", "resemblyzer", "yamnet", "basic_pitch"):
        assert registry.FAMILY_MODULES[family] == f"usad2.teachers.demo.{family}"
    for family in ("hf_wavlm", "whisper", "af_whisper", "atst_frame", "muq", "s3prl", "fairseq2"):
        assert registry.FAMILY_MODULES[family] == f"usad2.teachers.families.{family}"


def test_missing_files_say_how_to_fetch(tmp_path):
    with pytest.raises(TeacherError, match="fetch_teachers --teachers basic_pitch"):
        registry.build_teacher("basic_pitch", cache=str(tmp_path))


def test_list_and_show_commands(tmp_path, capsys):
    os.makedirs(tmp_path / "basic_pitch")
    (tmp_path / "basic_pitch" / "nmp.onnx").write_bytes(b"x")
    assert teachers_cmd.main(["list", "--cache", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == list(teachers_cmd.COLUMNS)
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["basic_pitch"] == ["basic_pitch", "basic_pitch", "music", "22050", "11025/128", "3", "264/88/88", "yes"]
    assert rows["yamnet"][-1] == "no" and rows["resemblyzer"][-2] == "256"
    assert teachers_cmd.main(["show", "yamnet", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "family: yamnet" in out and "frame_rate: 25/2" in out
    assert f"model.onnx: {tmp_path}/yamnet/model.onnx (missing)" in out
    with pytest.raises(TeacherError, match="unknown teacher 'nope'"):
        teachers_cmd.main(["show", "nope"])
