"""Recipe stages 1-3 on real-corpus layouts: egs/multidomain/local/data.sh --corpora.

The seven corpora are tiny fakes in each corpus's published layout (the builders of
test_corpora.py); the recipe runs in a copy of the repository's shell parts, so the
repository's own data/, dump/ and exp/ are never touched.
"""
import os
import subprocess
import sys

import pytest

from conftest import copy_recipe_tree
from test_corpora import (LIBRISPEECH_CHAPTERS, fake_audioset, fake_commonvoice, fake_gigaspeech,
                          fake_jamendo, fake_librilight, fake_librispeech, fake_voxpopuli)
from usad2.data.datadir import load_data_dir

CORPORA = ("librispeech", "librilight", "voxpopuli", "gigaspeech", "commonvoice", "audioset",
           "jamendo")


def run(cmd, cwd, timeout=600):
    # local/data.sh run directly (not through usad2.sh) finds usad2 as the template would
    env = dict(os.environ, USAD2_PYTHON=sys.executable, PYTHONPATH=str(cwd.parent.parent))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def corpora(tmp_path):
    """{name: root} of the seven fake corpora."""
    base = tmp_path / "corpora"
    chapters = LIBRISPEECH_CHAPTERS + (("test-clean", "61", "70968", 1),)
    return {"librispeech": fake_librispeech(base / "LibriSpeech", chapters),
            "librilight": fake_librilight(base / "librilight"),
            "voxpopuli": fake_voxpopuli(base / "voxpopuli"),
            "gigaspeech": fake_gigaspeech(base / "GigaSpeech"),
            "commonvoice": fake_commonvoice(base / "cv-corpus-17.0-2024-03-15"),
            "audioset": fake_audioset(base / "audioset"),
            "jamendo": fake_jamendo(base / "mtg-jamendo-dataset")}


@pytest.fixture
def recipe(tmp_path, repo_dir):
    return copy_recipe_tree(tmp_path / "repo", repo_dir)


# The fakes hold fewer subsets than the full corpora: the subsets they have, as a config file
# of local/data.sh (NAME=VALUE lines; an empty value: the corpus has no such split).
SUBSETS = """\
librispeech_train=train-clean-100
librilight_train=small
librilight_chunk_seconds=1
voxpopuli_train=train,unlabelled
voxpopuli_dev=''
voxpopuli_test=''
gigaspeech_train=XS
gigaspeech_dev=''
gigaspeech_test=''
commonvoice_train=validated
commonvoice_dev=''
audioset_train=balanced_train
jamendo_train=autotagging.tsv
jamendo_dev=''
jamendo_test=''
"""


@pytest.mark.recipe
def test_stages_1_to_3_on_every_corpus_layout(recipe, corpora, monkeypatch):
    (recipe / "conf" / "fake_subsets.conf").write_text(SUBSETS)
    # roots: two from db.local.sh (db.sh), the others on the option
    (recipe / "db.local.sh").write_text(f"LIBRISPEECH={corpora['librispeech']}\n"
                                        f"AUDIOSET={corpora['audioset']}\n")
    spec = ",".join(name if name in ("librispeech", "audioset") else f"{name}={corpora[name]}"
                    for name in CORPORA)
    args = ["./run.sh", "--stage", "1", "--stop_stage", "3", "--nj", "1", "--min_duration", "0.1",
            "--local_data_opts", f"--config conf/fake_subsets.conf --corpora {spec}"]
    r = run(args, recipe)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Stage 3: mix" in r.stderr and "Stage 4" not in r.stderr

    data = {s: load_data_dir(recipe / "data" / s, check_audio=True) for s in ("train", "dev", "test")}
    corpus_of = {s: {u.split("-", 1)[0] for u in d.utt_ids} for s, d in data.items()}
    assert corpus_of["train"] == set(CORPORA)
    assert corpus_of["dev"] == {"librispeech"}
    assert corpus_of["test"] == {"librispeech", "commonvoice", "audioset"}
    train = data["train"]
    assert train.domain("librispeech-103-1240-0000") == "speech"
    assert train.domain("audioset-Y--PJHxphWEs_30000") == "audio"
    assert train.domain("jamendo-track_0000382") == "music"
    # labels of some corpora stay (partial); transcripts, which not every corpus has, are left
    # out by combine_data (Kaldi's rule), and distillation does not read them
    assert train.table("utt2gender")["librispeech-103-1240-0000"] == ("f",)
    assert train.table("utt2genre")["jamendo-track_0000382"] == ("rock", "pop")
    assert train.segments is not None  # librilight and gigaspeech are cut by segments
    assert len(load_data_dir(recipe / "data" / "librilight_train")) == 6  # 1 s chunks

    # stages 2 and 3: every utterance decoded to 16 kHz WAV, the mix weights the three domains
    monkeypatch.chdir(recipe)  # dump/ paths are relative to the recipe
    raw = load_data_dir(recipe / "dump" / "raw" / "train", check_audio=True)
    assert set(raw.utt_ids) == set(train.utt_ids)
    mix = load_data_dir(recipe / "dump" / "raw" / "train_mix")
    assert {mix.domain(u) for u in mix.utt_ids} == {"speech", "audio", "music"}
    assert mix.table("utt2weight") is not None

    # a rerun skips every corpus
    r = run(args[:4] + ["1"] + args[5:], recipe)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count(": up to date") == 11  # every split prepared above


@pytest.mark.recipe
@pytest.mark.parametrize("opts, message", [
    ("--corpora timit=/x", "unknown corpus 'timit'"),
    ("--corpora jamendo", "no root for jamendo: give --corpora jamendo=PATH or set JAMENDO in db.local.sh"),
    ("--corpora audioset=/nonexistent", "audioset: /nonexistent is not a directory"),
    ("--corpora jamendo=/,jamendo=/", "--corpora: jamendo given twice"),
])
def test_bad_corpora_options(recipe, opts, message):
    r = run(["local/data.sh", "--data_dir", "data", *opts.split()], recipe, timeout=60)
    assert r.returncode != 0 and message in r.stderr, r.stderr


@pytest.mark.recipe
def test_corpus_without_a_dev_split_alone_is_an_error(recipe, corpora):
    r = run(["local/data.sh", "--corpora", f"audioset={corpora['audioset']}"], recipe, timeout=120)
    assert r.returncode != 0
    assert "no corpus of --corpora audioset=" in r.stderr and "has a dev split: set --<name>_dev" in r.stderr


@pytest.mark.recipe
def test_real_corpora_refuse_a_demo_data_dir(recipe, corpora):
    (recipe / "data").mkdir()
    (recipe / "data" / ".done").write_text("demo\n")
    r = run(["local/data.sh", "--corpora", f"jamendo={corpora['jamendo']}"], recipe, timeout=60)
    assert r.returncode != 0 and "data holds the demo corpus" in r.stderr


@pytest.mark.parametrize("size, lr", [("small", 8e-4), ("large", 1.5e-3)])
def test_paper_configs_are_distill_options(repo_dir, tmp_path, size, lr):
    """conf/paper/ holds the paper's values (docs/method.md §3.8, §4) under valid option names."""
    from usad2.bin.distill import parse_args

    conf = repo_dir / "egs" / "multidomain" / "conf" / "paper"
    common = ["--train_dir", str(tmp_path), "--out_dir", str(tmp_path / "exp"), "--teacher_mode", "online"]
    stage1 = parse_args(["--config", str(conf / f"distill_{size}.yaml")] + common)
    assert (stage1.lr, stage1.batch_seconds, stage1.schedule) == (lr, 800, "linear")
    stage2 = parse_args(["--config", str(conf / f"plus_{size}.yaml")] + common)
    assert (stage2.max_steps, stage2.batch_seconds) == (50000, 800)
    for name in (f"distill_{size}.yaml", f"plus_{size}.yaml"):
        assert "NOT RUN HERE" in (conf / name).read_text()
