"""The ablation driver (usad2.studies.ablate) and stage 8's s3prl probe.

The driver runs on the tiny synthetic teachers of test_distill_task with offline targets
extracted once. The recipe's own options (egs/TEMPLATE/usad2.sh) are tested in
test_recipe_options.py.
"""
import json
import os

import numpy as np
import pytest

from test_distill_task import make_data_dir, write_cards
from usad2.errors import ConfigError
from usad2.studies import ablate as A

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _opts(**kw):
    opts = {"teachers": ["sp", "au", "mu"], "plus_teachers": ["sp2", "any2"], "omega": 10.0, "preset": "tiny",
            "max_steps": 5, "plus_steps": 3, "common": ["--train_dir", "T"], "distill_config": None,
            "plus_config": "plus.yaml", "music": ["mu"], "runs_dir": "R"}
    opts.update(kw)
    return opts


def _arg(run, name):
    return run.argv[run.argv.index(name) + 1]


def test_plan_shares_runs_and_sets_each_variant():
    final, runs = A.plan(list(A.VARIANTS), [0, 1], _opts())
    names = sorted(r.name for r in runs)
    # stage 1: full (shared with no_stage2), omega1, no_music, freq_stride1; stage 2 for each + scratch
    assert names == sorted([f"s{st}_{v}_seed{s}" for s in (0, 1) for st in (1, 2)
                            for v in ("full", "omega1", "no_music", "freq_stride1")]
                           + [f"s2_scratch_seed{s}" for s in (0, 1)])
    assert final["no_stage2"][1] is [r for r in runs if r.name == "s1_full_seed1"][0]
    assert final["full"][0].after is final["no_stage2"][0]
    assert _arg(final["omega1"][0], "--omega") == "1.0" and _arg(final["omega1"][0].after, "--omega") == "1.0"
    assert _arg(final["full"][0].after, "--omega") == "10.0"
    assert _arg(final["no_music"][0].after, "--teachers") == "sp,au"
    assert _arg(final["full"][0].after, "--teachers") == "sp,au,mu"
    assert _arg(final["freq_stride1"][0].after, "--student") == "tiny_f1"
    scratch = final["stage2_scratch"][1]
    assert scratch.after is None and _arg(scratch, "--student") == "tiny" and "--init" not in scratch.argv
    assert _arg(scratch, "--stage2_teachers") == "sp2,any2" and _arg(scratch, "--max_steps") == "3"
    assert _arg(scratch, "--config") == "plus.yaml" and _arg(scratch, "--seed") == "1"
    assert _arg(final["full"][0], "--init") == os.path.join("R", "s1_full_seed0")
    assert _arg(final["full"][0], "--out_dir") == os.path.join("R", "s2_full_seed0")
    assert "--targets_dir" not in final["full"][0].argv
    final, _ = A.plan(["full"], [0], _opts(plus_targets="P"))
    assert final["full"][0].argv[-2:] == ["--targets_dir", "P"] and "--targets_dir" not in final["full"][0].after.argv


def test_plan_without_stage2_and_errors():
    final, runs = A.plan(["full", "no_stage2"], [0], _opts(plus_steps=0))
    assert [r.name for r in runs] == ["s1_full_seed0"] and final["full"][0] is final["no_stage2"][0]
    with pytest.raises(ConfigError, match="stage2_scratch needs --plus_teachers"):
        A.plan(["stage2_scratch"], [0], _opts(plus_steps=0))
    with pytest.raises(ConfigError, match="no teacher of domain music"):
        A.plan(["no_music"], [0], _opts(music=[]))
    with pytest.raises(ConfigError, match=r"unknown variant\(s\) \['omega2'\]"):
        A.plan(["omega2"], [0], _opts())


def test_music_teachers_from_the_shipped_cards():
    assert A.music_teachers(["speech_embedding", "yamnet", "basic_pitch"]) == ["basic_pitch"]


def _entry(speech, audio, music, pitch=None):
    e = {"word": speech, "sound_class": audio, "instrument_family": music,
         "_domain_mean": {"speech": speech, "audio": audio, "music": music}}
    if pitch is not None:
        e["pitch_class"] = pitch
    e["_mean"] = float(np.mean([speech, audio, music]))
    return e


def test_table_directions_and_markdown():
    final = {"full": {0: None, 1: None}, "omega1": {0: None, 1: None}, "no_music": {0: None, 1: None}}
    results = {"full.s0": _entry(0.8, 0.7, 0.6, 0.5), "full.s1": _entry(0.7, 0.7, 0.6, 0.7),
               "omega1.s0": _entry(0.6, 0.7, 0.6, 0.6), "omega1.s1": _entry(0.6, 0.7, 0.6, 0.6),
               "no_music.s0": _entry(0.8, 0.7, 0.7, 0.2), "no_music.s1": _entry(0.8, 0.7, 0.7, 0.2),
               "fbank": _entry(0.3, 0.3, 0.3, 0.1)}
    table = A.build_table(results, final, [0, 1])
    assert list(table) == ["full", "omega1", "no_music", "fbank"]
    s = table["full"]["summary"]
    assert s["speech"]["mean"] == pytest.approx(0.75) and s["speech"]["std"] == pytest.approx(np.std([0.8, 0.7], ddof=1))
    assert s["pitch"]["mean"] == pytest.approx(0.6) and s["speech"]["n"] == 2
    checks = {(c["worse"], c["metric"]): c for c in A.check_directions(table)}
    assert set(checks) == {("no_music", "music"), ("no_music", "pitch"), ("omega1", "speech"), ("fbank", "overall")}
    assert checks[("no_music", "music")]["holds"] is False                   # 0.6 vs 0.7
    assert checks[("no_music", "pitch")]["diff"] == pytest.approx(0.4) and checks[("no_music", "pitch")]["beyond_noise"]
    assert checks[("omega1", "speech")]["diff"] == pytest.approx(0.15)
    md = A.render_markdown(table, A.check_directions(table), "python -m usad2.studies.ablate X")
    assert "| full | 2 | 0.750 ± 0.071 |" in md
    assert "| no music teacher is worse on the music tasks (full vs no_music) | music | -0.100 | NO |" in md
    assert "`python -m usad2.studies.ablate X`" in md


# ---- end to end on tiny synthetic teachers -----------------------------------------------------
TEACHERS = "tiny_speech,tiny_audio,tiny_music"


def _labels(path, rng):
    """Add one probe label file per domain to a make_data_dir dir (random classes: structure only)."""
    files = {"speech": "utt2word", "audio": "utt2sound_class", "music": "utt2pitch_class"}
    with open(os.path.join(path, "utt2domain")) as f:
        doms = dict(line.split() for line in f if line.strip())
    for dom, name in files.items():
        with open(os.path.join(path, name), "w") as f:
            for i, utt in enumerate(sorted(u for u, d in doms.items() if d == dom)):
                f.write(f"{utt} {'ab'[i % 2]}\n")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """cards, data dirs (raw/{train_mix,dev,train,test}) and offline targets of the tiny teachers."""
    from usad2.bin.extract_teacher import main as extract

    root = tmp_path_factory.mktemp("abl")
    cards = write_cards(str(root / "cards"))
    raw = root / "raw"
    rng = np.random.default_rng(0)
    for name, n, seed in (("train_mix", 4, 1), ("dev", 2, 2), ("train", 4, 3), ("test", 2, 4)):
        make_data_dir(raw / name, n_per_domain=n, seed=seed)
        _labels(raw / name, rng)
    for teacher in TEACHERS.split(","):
        for dset in ("train_mix", "dev"):
            assert extract(["--teacher", teacher, "--data", str(raw / dset), "--out",
                            str(root / "targets" / teacher / dset), "--teacher_cards", cards, "--progress", "false"]) == 0
    return {"root": root, "cards": cards, "raw": raw, "targets": root / "targets"}


def _argv(shared, out, grid, plus_steps, seeds="0"):
    return ["--grid", grid, "--out", str(out), "--train_dir", str(shared["raw"] / "train_mix"),
            "--dev_dir", str(shared["raw"] / "dev"), "--targets_dir", str(shared["targets"]),
            "--data_root", str(shared["raw"]), "--teachers", TEACHERS, "--plus_teachers", "tiny_speech,tiny_audio",
            "--teacher_cards", shared["cards"], "--seeds", seeds, "--max_steps", "2", "--plus_steps", str(plus_steps),
            "--distill_args", "--plugins test_distill_task --batch_seconds 4 --crop_seconds 1 --warmup_steps 1",
            "--probe_args", "--max_epochs 3 --lrs 1e-2 --weight_decays 0", "--jobs", "2"]


@pytest.fixture
def test_env(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.join(REPO, "test"), REPO,
                                                      os.environ.get("PYTHONPATH", "")]))


def test_driver_end_to_end_stage1_only(shared, tmp_path, test_env):
    out = tmp_path / "abl"
    assert A.main(_argv(shared, out, "full,no_stage2", 0)) == 0
    doc = json.loads((out / "ablations.json").read_text())
    assert list(doc["runs"]) == ["s1_full_seed0"]                  # no_stage2 = full without stage 2
    assert set(doc["table"]) == {"full", "no_stage2", "fbank", "random_init"}
    full = doc["table"]["full"]["entries"]["0"]
    assert set(full) >= {"word", "sound_class", "pitch_class", "_domain_mean", "_mean"}
    assert doc["table"]["full"]["summary"]["overall"]["mean"] == pytest.approx(full["_mean"])
    assert doc["table"]["full"]["entries"] == doc["table"]["no_stage2"]["entries"]   # the same model
    assert [c["worse"] for c in doc["directions"]] == ["fbank", "random_init"]
    md = (out / "ablations.md").read_text()
    assert "| full | 1 |" in md and "| random_init | 1 |" in md and "python -m usad2.studies.ablate --grid" in md
    assert (out / "ablations.png").stat().st_size > 1000
    ckpt = out / "runs" / "s1_full_seed0" / "checkpoints" / "last.pt"
    mtime = ckpt.stat().st_mtime
    assert A.main(_argv(shared, out, "full,no_stage2", 0)) == 0           # rerun: nothing retrained
    assert ckpt.stat().st_mtime == mtime


@pytest.mark.slow
def test_driver_full_grid_two_seeds(shared, tmp_path, test_env):
    out = tmp_path / "abl"
    grid = "full,omega1,no_music,no_stage2,stage2_scratch"
    assert A.main(_argv(shared, out, grid, 2, seeds="0,1")) == 0
    doc = json.loads((out / "ablations.json").read_text())
    assert len(doc["runs"]) == 2 * 7
    assert set(doc["table"]) == set(grid.split(",")) | {"fbank", "random_init"}
    assert doc["table"]["omega1"]["summary"]["speech"]["n"] == 2
    assert doc["table"]["random_init"]["summary"]["overall"]["n"] == 2   # one random draw per seed
    assert set(doc["table"]["random_init"]["seeds"]) == {"random_init.s0", "random_init.s1"}
    worse = {c["worse"] for c in doc["directions"]}
    assert worse == {"no_music", "omega1", "stage2_scratch", "fbank", "random_init"}
    cfg = (out / "runs" / "s1_no_music_seed1" / "run.sh").read_text()
    assert "tiny_speech,tiny_audio " in cfg and "--seed 1" in cfg


# ---- stage 8's s3prl probe --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.s3prl
def test_s3prl_probe_on_a_labelled_subset(tmp_path, test_env):
    """s3prl's runner (-u usad2, emotion downstream) on the utterances carrying utt2pitch_class."""
    import torch

    from test_probe import _make_corpus
    from usad2.bin import s3prl_probe as S
    from usad2.errors import DataDirError
    from usad2.models.export import save_export
    from usad2.models.presets import get_preset
    from usad2.models.wave_encoder import Usad2Model

    _make_corpus(tmp_path / "c")
    # a mixed data dir: two extra utterances without the label are left out
    with open(tmp_path / "c" / "train" / "utt2pitch_class") as f:
        lines = f.read().splitlines()
    (tmp_path / "c" / "train" / "utt2pitch_class").write_text("\n".join(lines[2:]) + "\n")
    torch.manual_seed(0)
    export = tmp_path / "model.pt"
    save_export(Usad2Model(get_preset("tiny")), str(export))
    out = tmp_path / "s3"
    assert S.main(["--export", str(export), "--data_root", str(tmp_path / "c"), "--label", "pitch_class",
                   "--steps", "4", "--out_dir", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "s3prl_pitch_class" and res["num_train"] == 22 and res["num_test"] == 12
    assert 0.0 <= res["accuracy"] <= 1.0 and res["chance"] == pytest.approx(4 / 12)
    assert len((out / "s3prl_exp" / "test_fold1_predict.txt").read_text().split()) == 2 * 12
    with pytest.raises(DataDirError, match="no utt2genre file"):
        S.labelled_subset(str(tmp_path / "c" / "train"), "genre", str(tmp_path / "x"))
