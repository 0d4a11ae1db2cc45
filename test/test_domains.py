"""Automatic domain inference (issue 16): the ontology mapping, the tagger math, the verb."""
import json
import os
import subprocess

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from usad2.bin import infer_domains as cli
from usad2.data.datadir import DataDir, load_data_dir
from usad2.domains.mapping import read_mapping
from usad2.domains.tagger import class_distribution, pool, read_tagger
from usad2.errors import ConfigError, DataDirError

SR = 16000
YAMNET_MAP = os.path.join(os.path.dirname(read_tagger("yamnet").mapping), "yamnet.tsv")


def test_yamnet_mapping_follows_the_ontology_rule():
    m = read_mapping(YAMNET_MAP)
    assert len(m.mids) == 521 and len(set(m.mids)) == 521
    domains = dict(zip(m.mids, m.domains))
    # the Speech subtree as YAMNet has it (Male/Female speech are not YAMNet classes)
    speech = {"/m/09x0r", "/m/0ytgt", "/m/01h8n0", "/m/02qldy", "/m/0261r1", "/m/0brhx"}
    assert {mid for mid, d in domains.items() if d == "speech"} == speech
    assert m.domains.count("music") == 149
    for mid in ("/m/04rlf", "/m/026t6", "/m/05r5c", "/m/064t9", "/m/0l14t7"):  # Music, Drum, Piano, Pop music, Singing bowl
        assert domains[mid] == "music", mid
    for mid in ("/m/0bt9lr", "/m/015lz1", "/m/028v0c", "/m/02fxyj"):  # Dog, Singing, Silence, Humming
        assert domains[mid] == "audio", mid
    matrix = m.matrix()
    assert matrix.shape == (521, 3) and (matrix.sum(1) == 1).all()
    assert matrix[:, 0].sum() == 6 and matrix[:, 2].sum() == 149


def test_yamnet_mapping_fits_the_class_map_that_ships_with_the_model(teacher_cache, tmp_path):
    from usad2.teachers.registry import load_card, source_files
    class_map = source_files(load_card("yamnet"), teacher_cache)["yamnet_class_map.csv"]
    mapping = read_mapping(YAMNET_MAP)
    mapping.check_class_map(class_map)  # same indices and mids
    text = open(class_map, encoding="utf-8").read()
    (tmp_path / "swapped.csv").write_text(text.replace("2,/m/01h8n0,", "2,/m/02qldy,", 1))
    with pytest.raises(ConfigError, match="first difference at index 2"):
        mapping.check_class_map(str(tmp_path / "swapped.csv"))


@pytest.mark.parametrize("lines,message", [
    ("0\t/m/a\tspeech\tA\n1\t/m/b\tnoise\tB\n", ":2: domain 'noise' is not one of speech, audio, music"),
    ("0\t/m/a\tspeech\tA\n2\t/m/b\taudio\tB\n", ":2: class index '2', expected 1"),
    ("# comment\n0\t/m/a speech A\n", ":2: expected 4 tab-separated fields"),
    ("0\t/m/a\tspeech\tA\n1\t/m/a\taudio\tB\n", ":2: class /m/a listed twice"),
    ("# only comments\n", "no classes"),
])
def test_mapping_errors_name_file_and_line(tmp_path, lines, message):
    path = tmp_path / "map.tsv"
    path.write_text(lines)
    with pytest.raises(ConfigError, match=message):
        read_mapping(str(path))


def test_class_distribution_and_pooling_by_hand():
    scores = torch.tensor([[0.0, 0.0, np.log(2.0)], [0.0, 0.0, 0.0]])
    soft = class_distribution(scores, "softmax")
    assert soft.numpy() == pytest.approx(np.array([[0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]]))
    sig = class_distribution(torch.tensor([[0.0, 0.0, 0.0, -1e4]]), "sigmoid")  # 0.5 0.5 0.5 0
    assert sig.numpy() == pytest.approx(np.array([[1 / 3, 1 / 3, 1 / 3, 0.0]]))
    assert pool([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]) == pytest.approx([0.5, 0.25, 0.25])
    with pytest.raises(ConfigError, match="cannot pool"):
        pool(np.zeros((0, 3)))


def _espeak(tmp_path, text):
    path = str(tmp_path / "say.wav")
    subprocess.run(["espeak-ng", "-w", path, text], check=True)
    wav, rate = soundfile.read(path, dtype="float32")
    return torchaudio.functional.resample(torch.from_numpy(wav), rate, SR).numpy()


def _piano(seconds, seed=0):
    """Harmonic notes with a piano-like decay, a new note every 0.4 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for start in np.arange(0, seconds, 0.4):
        f = 220 * 2 ** (rng.integers(0, 24) / 12)
        env = (t >= start) * np.exp(-np.clip(t - start, 0, None) * 4)
        x += env * sum(np.sin(2 * np.pi * h * f * t) / h for h in range(1, 6))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture
def podcast(tmp_path):
    """One recording, speech then music, cut into two segments; plus a speech-only recording."""
    speech = _espeak(tmp_path, "Welcome back to the show. Today we talk about distillation of audio encoders.")
    music = _piano(4.0)
    rec = np.concatenate([speech, music])
    soundfile.write(tmp_path / "rec.wav", rec, SR)
    soundfile.write(tmp_path / "talk.wav", speech, SR)
    cut = len(speech) / SR
    data = DataDir({"rec": str(tmp_path / "rec.wav"), "talk": str(tmp_path / "talk.wav")},
                   segments={"rec-a": ("rec", 0.0, cut), "rec-b": ("rec", cut, -1), "talk-1": ("talk", 0, -1)},
                   utt2domain={"rec-a": "speech", "rec-b": "music", "talk-1": "speech"})
    data.write(tmp_path / "data")
    return tmp_path / "data"


def test_infer_domains_verb_tags_each_segment(podcast, teacher_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("USAD2_CACHE", teacher_cache)
    (podcast / ".done").write_text("{}")  # a stage stamp: in-place writes keep other files
    assert cli.main(["--data", str(podcast)]) == 0
    summary = json.loads(capsys.readouterr().out)
    post = load_data_dir(podcast).table("utt2domain_post")
    assert sorted(post) == ["rec-a", "rec-b", "talk-1"]
    for p in post.values():
        assert sum(p) == pytest.approx(1.0, abs=1e-5) and min(p) >= 0
    assert post["rec-a"][0] > 0.8 and post["talk-1"][0] > 0.8  # speech segment, speech recording
    assert post["rec-b"][2] > 0.5  # the music segment of the same recording keeps its own posterior
    assert summary["confusion"]["speech"]["speech"] == 2 and summary["agreement"] == 1.0
    assert (podcast / ".done").exists() and (podcast / ".infer_domains.done").exists()
    before = (podcast / "utt2domain_post").stat().st_mtime_ns
    assert cli.main(["--data", str(podcast)]) == 0  # stamped: nothing redone
    assert (podcast / "utt2domain_post").stat().st_mtime_ns == before
    # hard labels: never over existing labels in place; into a copy with --out
    with pytest.raises(DataDirError, match="utt2domain exists.*--out"):
        cli.main(["--data", str(podcast), "--hard", "true"])
    assert cli.main(["--data", str(podcast), "--out", str(tmp_path / "copy"), "--hard", "true"]) == 0
    copy = load_data_dir(tmp_path / "copy")
    assert copy.table("utt2domain") == {"rec-a": "speech", "rec-b": "music", "talk-1": "speech"}
    assert copy.table("utt2domain_post") == post and copy.segments == load_data_dir(podcast).segments


def test_any_card_with_class_scores_plus_a_mapping_is_a_tagger(podcast, teacher_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("USAD2_CACHE", teacher_cache)
    rows = ["0\t/m/x\tmusic\tx"] + [f"{i}\t/m/c{i}\t{'audio' if i % 2 else 'music'}\tc{i}" for i in range(1, 521)]
    (tmp_path / "odd.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "odd.yaml").write_text("card: yamnet\nlayer: 7\nactivation: sigmoid\nmapping: odd.tsv\n")
    from usad2.domains.infer import infer_domains
    summary = infer_domains(podcast, tmp_path / "out", tagger=str(tmp_path / "odd.yaml"))
    post = load_data_dir(tmp_path / "out").table("utt2domain_post")
    assert all(p[0] == 0.0 for p in post.values())  # no class maps to speech
    assert summary["hard_counts"]["speech"] == 0
    (tmp_path / "short.tsv").write_text("0\t/m/x\tmusic\tx\n")
    (tmp_path / "short.yaml").write_text("card: yamnet\nlayer: 7\nmapping: short.tsv\n")
    with pytest.raises(ConfigError, match="layer 7 has 521 classes, mapping .*short.tsv 1"):
        infer_domains(podcast, tmp_path / "out2", tagger=str(tmp_path / "short.yaml"))
    with pytest.raises(ConfigError, match="no such tagger"):
        infer_domains(podcast, tmp_path / "out3", tagger="panns")
