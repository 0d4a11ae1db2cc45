"""The recipe switched to the paper's teachers by local checkpoint paths (issue 6).

`teachers localize` (stage 0) writes card copies that point at local checkpoints; stages 4-6 read
them with --teacher_cards. The fast tests check that action; the recipe test runs
egs/multidomain stages 0 and 2-7 (and 4-5 online) in a temporary copy of the repository's shell
parts on a micro data dir, with tiny random checkpoints of WavLM, ATST-Frame, MuQ, Whisper and
AF-Whisper written in their official formats (usad2.teachers.testing) and given by path.
"""
import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
from conftest import copy_recipe_tree
import soundfile
import torch
import yaml

from usad2.bin import teachers as teachers_cli
from usad2.errors import ConfigError, TeacherError
from usad2.teachers import registry, testing
from usad2.utils import stamp

STAGE1 = ("wavlm_base_plus", "atst_frame", "muq")
STAGE2 = ("whisper_large_v3", "af_whisper")
RATES = {"wavlm_base_plus": "50", "atst_frame": "25", "muq": "25", "whisper_large_v3": "50", "af_whisper": "25"}
LAYERS, WIDTH = 4, 32


# ----------------------------------------------------------------------------- localize action
def test_parse_checkpoints_and_errors():
    assert teachers_cli.parse_checkpoints(" muq=/m/muq , wavlm_base_plus=/a=b ,") == {
        "muq": "/m/muq", "wavlm_base_plus": "/a=b"}
    assert teachers_cli.parse_checkpoints("") == {}
    with pytest.raises(ConfigError, match="'muq' is not NAME=PATH"):
        teachers_cli.parse_checkpoints("muq")
    with pytest.raises(ConfigError, match="muq is given twice"):
        teachers_cli.parse_checkpoints("muq=/a,muq=/b")


def test_localize_writes_stamped_cards_that_build_the_teacher(tmp_path, monkeypatch):
    src_cards = testing.write_tiny_cards(tmp_path / "src_cards", names=["wavlm_base_plus"])
    ckpt = testing.write_tiny_wavlm(tmp_path / "models" / "wavlm", layers=LAYERS)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cards"
    plan = teachers_cli.localize("wavlm_base_plus=models/wavlm", out, ["wavlm_base_plus"], card_dirs=src_cards)
    assert plan == []
    text = (out / "wavlm_base_plus.yaml").read_text()
    assert text.startswith("# Written by `python -m usad2.bin.teachers localize` from ")
    card = yaml.safe_load(text)
    assert card["source"]["path"] == str(ckpt) and card["num_layers"] == LAYERS
    assert card["source"]["hf_repo"] == "microsoft/wavlm-base-plus"  # the rest of the card is kept
    teacher = registry.build_teacher("wavlm_base_plus", card_dirs=[str(out)])
    outs, frames = teacher.extract(0.1 * torch.randn(1, 16000), torch.tensor([16000]), [LAYERS])
    assert frames.tolist() == [49] and outs[0].shape == (1, 49, WIDTH)
    # same cards: stamped, left alone; another path: rewritten
    mtime = os.stat(out / "wavlm_base_plus.yaml").st_mtime_ns
    assert teachers_cli.localize_cards({"wavlm_base_plus": str(ckpt)}, out, src_cards) == "present"
    assert os.stat(out / "wavlm_base_plus.yaml").st_mtime_ns == mtime
    other = shutil.copytree(ckpt, tmp_path / "models" / "wavlm2")
    assert teachers_cli.localize_cards({"wavlm_base_plus": str(other)}, out, src_cards) == "written"
    assert yaml.safe_load((out / "wavlm_base_plus.yaml").read_text())["source"]["path"] == str(other)
    assert stamp.is_done(out, stamp.fingerprint({"cards": {
        "wavlm_base_plus": registry.load_card("wavlm_base_plus", str(out)).to_dict()}}))


def test_localize_errors_and_fetch_plan(tmp_path):
    with pytest.raises(TeacherError, match=r"teacher muq: local checkpoint .*nowhere does not exist"):
        teachers_cli.localize(f"muq={tmp_path}/nowhere", tmp_path / "cards")
    with pytest.raises(TeacherError, match="unknown teacher 'nosuch'"):
        teachers_cli.localize(f"nosuch={tmp_path}", tmp_path / "cards")
    with pytest.raises(ConfigError, match="--out is required"):
        teachers_cli.localize(f"muq={tmp_path}")
    assert not (tmp_path / "cards").exists()
    # demo teachers with a wheel source are fetched; a paper teacher given by path is not
    assert teachers_cli.localize(f"muq={tmp_path}", tmp_path / "cards", ["yamnet", "muq", "basic_pitch"],
                                 cache=tmp_path / "cache") == ["yamnet", "basic_pitch"]
    # a paper teacher neither given by path nor in the cache cannot be fetched: say how to give it
    with pytest.raises(TeacherError, match=r"whisper_large_v3: .*openai--whisper-large-v3 is missing and cannot "
                                           r"be fetched.*--teacher_checkpoints whisper_large_v3=PATH"):
        teachers_cli.fetch_plan(["whisper_large_v3"], cache=str(tmp_path / "cache"))
    (tmp_path / "cache" / "hf" / "openai--whisper-large-v3").mkdir(parents=True)
    assert teachers_cli.fetch_plan(["whisper_large_v3"], cache=str(tmp_path / "cache")) == []


def test_localize_command_prints_the_fetch_plan(tmp_path, capsys):
    rc = teachers_cli.main(["localize", "--checkpoints", f"atst_frame={tmp_path}", "--out", str(tmp_path / "c"),
                            "--teachers", "atst_frame,speech_embedding"])
    assert rc == 0 and capsys.readouterr().out == "speech_embedding\n"
    assert sorted(os.listdir(tmp_path / "c")) == [".done", "atst_frame.yaml"]


# ----------------------------------------------------------------------------- recipe
def write_micro_data(data_root):
    """data/{train,dev,test}: a few 1.5-3 s clips per domain (noise bursts, tones, clicks), 16 kHz."""
    from usad2.data.datadir import DataDir

    rng = np.random.default_rng(0)
    audio = data_root / "audio"
    audio.mkdir(parents=True)
    counts = {"train": 4, "dev": 1, "test": 1}
    for split, n in counts.items():
        wav, dom = {}, {}
        for domain in ("speech", "audio", "music"):
            for i in range(n):
                sec = 1.5 + 0.5 * i + (0.25 if split != "train" else 0)
                t = np.arange(int(sec * 16000)) / 16000
                if domain == "speech":
                    x = rng.normal(0, 0.2, t.size) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
                elif domain == "music":
                    x = 0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t) + 0.1 * np.sin(2 * np.pi * 660 * t)
                else:
                    x = rng.normal(0, 0.3, t.size) * (np.mod(t, 0.25) < 0.03)
                utt = f"{domain}_{split}_{i}"
                path = audio / f"{utt}.wav"
                soundfile.write(str(path), x.astype(np.float32), 16000, subtype="PCM_16")
                wav[utt], dom[utt] = str(path), domain
        DataDir(wav, utt2domain=dom, utt2spk={u: u for u in wav}).write(data_root / split)


@pytest.fixture
def recipe_copy(tmp_path, repo_dir):
    """egs/multidomain in a copy of the repository's shell parts (tools/ and usad2/ linked)."""
    return copy_recipe_tree(tmp_path / "repo", repo_dir)


@pytest.fixture
def paper_recipe(tmp_path, recipe_copy):
    """The recipe copy with micro data, tiny checkpoints of the five paper teachers and their cards."""
    recipe = recipe_copy
    write_micro_data(recipe / "data")
    ckpts = testing.write_tiny_paper_teachers(tmp_path / "models", layers=LAYERS, width=WIDTH)
    cards = testing.write_tiny_cards(tmp_path / "tiny_cards", layers=LAYERS, width=WIDTH)
    env = dict(os.environ, USAD2_TEACHER_CARDS=str(cards), USAD2_CACHE=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1")
    return recipe, ckpts, env


def run_recipe(recipe, env, *options, timeout=900):
    r = subprocess.run(["./run.sh", *options], cwd=recipe, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def test_recipe_stage_5_without_stage_0_cards_stops(recipe_copy, tmp_path):
    """Local checkpoints but no cards yet: training must not fall back to the package cards."""
    raw = recipe_copy / "dump" / "raw" / "train_mix"
    raw.mkdir(parents=True)
    r = subprocess.run(["./run.sh", "--stage", "5", "--stop_stage", "5", "--teachers", "muq",
                        "--teacher_checkpoints", f"muq={tmp_path}"], cwd=recipe_copy, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert "dump/teacher_cards is missing: run stage 0 (it writes the cards of --teacher_checkpoints)" in r.stderr
    assert not (recipe_copy / "exp").exists()


def read_matrix(scp):
    """First matrix of a targets scp."""
    import kaldiio

    with open(scp, encoding="utf-8") as f:
        key, _ = f.readline().split(maxsplit=1)
    return key, kaldiio.load_scp(str(scp))[key]


@pytest.mark.recipe
@pytest.mark.slow
def test_recipe_runs_with_paper_teachers_given_by_path(paper_recipe):
    recipe, ckpts, env = paper_recipe
    t0 = time.monotonic()
    common = ["--teachers", ",".join(STAGE1), "--plus_teachers", ",".join(STAGE2), "--demo_size", "tiny",
              "--teacher_checkpoints", ",".join(f"{n}={p}" for n, p in ckpts.items()), "--nj", "1",
              "--distill_args", "--max_steps 4 --save_every 4 --dev_every 4 --batch_seconds 8 --crop_seconds 2 "
                                "--warmup_steps 1 --norm_batches 2 --log_every 1"]
    r = run_recipe(recipe, env, "--stage", "0", "--stop_stage", "0", "--run_plus", "true", *common)
    assert "nothing to fetch (every teacher is local)" in r.stderr
    card_dir = recipe / "dump" / "teacher_cards"
    assert sorted(os.listdir(card_dir)) == [".done"] + sorted(f"{n}.yaml" for n in ckpts)
    for name, path in ckpts.items():
        assert yaml.safe_load((card_dir / f"{name}.yaml").read_text())["source"]["path"] == os.path.abspath(path)
    r = run_recipe(recipe, env, "--stage", "0", "--stop_stage", "0", "--run_plus", "true", *common)
    assert "teacher cards in dump/teacher_cards: present" in r.stderr  # stamped: not rewritten
    t_stage0 = time.monotonic() - t0

    # the paper's stage 2 (the demo recipe keeps the stage-1 teachers by default; the paper drops them)
    r = run_recipe(recipe, env, "--stage", "2", "--stop_stage", "7", "--run_plus", "true",
                   "--plus_keep_stage1", "false", *common)
    t_offline = time.monotonic() - t0 - t_stage0
    durations = {line.split()[0]: float(line.split()[1])
                 for line in (recipe / "dump/raw/train_mix/utt2dur").read_text().splitlines()}
    for name in STAGE1 + STAGE2:
        for dset in ("train_mix", "dev"):
            out = recipe / "dump" / "targets" / name / dset
            meta = json.loads((out / "meta.json").read_text())
            layers = [LAYERS] if name in STAGE2 else [1, 2, 3, 4]
            assert meta["layers"] == layers and meta["widths"] == [WIDTH] * len(layers)
            assert meta["frame_rate"] == RATES[name]
            assert meta["teacher"]["source"]["path"] == os.path.abspath(ckpts[name])
            key, mat = read_matrix(out / f"L{layers[-1]}.scp")
            assert mat.shape[1] == WIDTH and np.isfinite(mat).all() and np.abs(mat).sum() > 0
            if dset == "train_mix":
                assert abs(mat.shape[0] - durations[key] * int(RATES[name])) <= 2, (name, key, mat.shape)

    exp = recipe / "exp" / "usad2_mini6_offline_distill_tiny"
    stage1 = torch.load(exp / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    plus = torch.load(recipe / "exp" / "usad2_mini6_offline_distill_tiny_plus_tiny" / "checkpoints" / "last.pt",
                      weights_only=True, map_location="cpu")
    assert stage1["step"] == plus["step"] == 4
    assert [t["name"] for t in stage1["teachers"]] == list(STAGE1)
    assert {k.split(".")[0] for k in stage1["heads"]} == {f"{n}:L{k}" for n in STAGE1 for k in (1, 2, 3, 4)}
    assert [t["name"] for t in plus["teachers"]] == list(STAGE2)  # drop_stage1: only the "+" heads
    assert {k.split(".")[0] for k in plus["heads"]} == {f"{n}:L{LAYERS}" for n in STAGE2}
    assert plus["config"]["teacher_cards"] == "dump/teacher_cards"

    import usad2

    model = usad2.load(exp / "export" / "model.pt")
    with torch.inference_mode():
        out = model(0.1 * torch.randn(2, 32000), torch.tensor([32000, 16000]))
    assert out.hidden_states[-1].shape[0] == 2 and out.lengths.tolist() == [99, 49]  # 198 and 98 fbank frames, stride 2
    assert torch.isfinite(out.hidden_states[-1]).all()

    # online mode with one paper teacher by path: stage 4 is skipped, stage 5 runs the teacher
    r = run_recipe(recipe, env, "--stage", "4", "--stop_stage", "5", "--teacher_mode", "online",
                   "--tag", "online_wavlm", *[c if c != ",".join(STAGE1) else "wavlm_base_plus" for c in common])
    assert "Stage 4: teacher targets: skipped (--teacher_mode online)" in r.stderr
    online = torch.load(recipe / "exp" / "online_wavlm" / "checkpoints" / "last.pt", weights_only=True,
                        map_location="cpu")
    assert online["step"] == 4 and [t["name"] for t in online["teachers"]] == ["wavlm_base_plus"]
    assert online["config"]["targets_dir"] is None
    t_online = time.monotonic() - t0 - t_stage0 - t_offline
    print(f"paper-teacher recipe: stage 0 (twice) {t_stage0:.1f} s, stages 2-7 offline {t_offline:.0f} s, "
          f"stages 4-5 online {t_online:.0f} s")
