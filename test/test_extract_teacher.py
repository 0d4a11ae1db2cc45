"""Stage 4: offline extraction with a real demo teacher; shards, merging, and kill -9 resume."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from usad2.bin.extract_teacher import extract_teacher
from usad2.data.datadir import DataDir
from usad2.targets.store import TargetsReader

SR = 16000


def make_data(root, n=5):
    """n short utterances: tones of different pitch and length, with utt2domain."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    wav = {}
    for i in range(n):
        t = np.arange(int(SR * (0.6 + 0.25 * i))) / SR
        path = audio / f"u{i}.wav"
        sf.write(path, 0.3 * np.sin(2 * np.pi * (220 * 2 ** (i / 4)) * t), SR)
        wav[f"u{i}"] = str(path)
    DataDir(wav, utt2domain={u: "music" for u in wav}).write(root / "data")
    return str(root / "data")


def targets_content(out):
    reader = TargetsReader(out)
    return {u: reader.get(u) for u in reader.utterances()}


@pytest.fixture(scope="module")
def data_and_reference(tmp_path_factory, teacher_cache):
    root = tmp_path_factory.mktemp("extract")
    os.environ["USAD2_CACHE"] = teacher_cache
    data = make_data(root)
    ref = str(root / "ref")
    assert extract_teacher(data, "basic_pitch", ref, nj=1, progress=False)
    return root, data, ref


def test_merged_targets_shapes_and_meta(data_and_reference):
    _, _, ref = data_and_reference
    content = targets_content(ref)
    assert sorted(content) == [f"u{i}" for i in range(5)]
    for i in range(5):
        contour, note, onset = content[f"u{i}"]
        n_frames = int(np.ceil((0.6 + 0.25 * i) * SR * 22050 / SR / 256))  # ceil(seconds * 22050/256)
        assert abs(contour.shape[0] - n_frames) <= 1
        assert contour.shape[1] == 264 and note.shape[1] == 88 and onset.shape[1] == 88
    lines = open(os.path.join(ref, "utt2num_frames")).read().split()
    assert lines[0] == "u0" and int(lines[1]) == content["u0"][0].shape[0]


def test_nj2_equals_nj1_and_rerun_skips(data_and_reference, tmp_path):
    _, data, ref = data_and_reference
    out = str(tmp_path / "nj2")
    assert not extract_teacher(data, "basic_pitch", out, nj=2, job=2, progress=False)  # shard 1 pending
    assert extract_teacher(data, "basic_pitch", out, nj=2, job=1, progress=False)  # all done -> merged
    got, want = targets_content(out), targets_content(ref)
    assert sorted(got) == sorted(want)
    for u in want:
        for a, b in zip(got[u], want[u]):
            assert np.array_equal(a, b)
    before = os.path.getmtime(os.path.join(out, "shards", "1", "L1.ark"))
    assert extract_teacher(data, "basic_pitch", out, nj=2, progress=False)
    assert os.path.getmtime(os.path.join(out, "shards", "1", "L1.ark")) == before


def test_kill_9_then_rerun_gives_identical_targets(data_and_reference, tmp_path, teacher_cache):
    _, data, ref = data_and_reference
    out = str(tmp_path / "killed")
    cmd = [sys.executable, "-m", "usad2.bin.extract_teacher", "--data", data, "--teacher", "basic_pitch",
           "--out", out, "--nj", "3", "--progress", "false"]
    env = dict(os.environ, USAD2_CACHE=teacher_cache, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(out, "shards", "1", ".done")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, ".done"))  # killed before completion
    subprocess.run(cmd, env=env, check=True, stderr=subprocess.DEVNULL)
    got, want = targets_content(out), targets_content(ref)
    for u in want:
        for a, b in zip(got[u], want[u]):
            assert np.array_equal(a, b)
    assert not [n for n in os.listdir(os.path.join(out, "shards")) if n.endswith(".tmp")]


def test_missing_audio_names_the_utterance(tmp_path, teacher_cache):
    os.environ["USAD2_CACHE"] = teacher_cache
    data = make_data(tmp_path, n=2)
    os.unlink(tmp_path / "audio" / "u1.wav")
    from usad2.errors import Usad2Error

    with pytest.raises(Usad2Error, match="u1"):
        extract_teacher(data, "basic_pitch", str(tmp_path / "out"), progress=False)


def test_force_on_one_job_redoes_only_that_shard_and_remerges(data_and_reference, tmp_path):
    _, data, ref = data_and_reference
    out = str(tmp_path / "force")
    assert extract_teacher(data, "basic_pitch", out, nj=2, progress=False)
    shard2 = os.path.join(out, "shards", "2", "L1.ark")
    before2 = os.path.getmtime(shard2)
    merged_before = os.path.getmtime(os.path.join(out, ".done"))
    time.sleep(0.02)
    assert extract_teacher(data, "basic_pitch", out, nj=2, job=1, force=True, progress=False)
    assert os.path.getmtime(shard2) == before2
    assert os.path.getmtime(os.path.join(out, ".done")) > merged_before  # shard 1 newer -> re-merged
    got, want = targets_content(out), targets_content(ref)
    assert all(np.array_equal(a, b) for u in want for a, b in zip(got[u], want[u]))


def test_default_layers_cover_stage_1_and_the_last_layer_for_stage_2():
    from usad2.targets.extract import default_layers
    from usad2.teachers.registry import load_card

    assert default_layers(load_card("yamnet")) == [2, 4, 6, 7]  # distill_layers + last (logits)
    assert default_layers(load_card("basic_pitch")) == [1, 2, 3]
    assert default_layers(load_card("resemblyzer")) == [1, 2, 3]  # fewer layers than K = 4
    assert default_layers(load_card("wavlm_base_plus")) == [3, 6, 9, 12]


def test_torch_teacher_at_bf16_close_to_fp32_and_stamped_apart(tmp_path):
    import dataclasses

    import yaml

    from usad2.teachers import registry, testing

    data = make_data(tmp_path, n=3)
    card = dataclasses.replace(registry.load_card("wavlm_base_plus"), num_layers=2, width=32,
                               source={"path": str(testing.write_tiny_wavlm(tmp_path / "wavlm"))})
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "wavlm_base_plus.yaml").write_text(yaml.safe_dump(card.to_dict()))
    fp32, bf16 = str(tmp_path / "fp32"), str(tmp_path / "bf16")
    assert extract_teacher(data, "wavlm_base_plus", fp32, teacher_cards=str(cards), progress=False, precision="fp32")
    assert extract_teacher(data, "wavlm_base_plus", bf16, teacher_cards=str(cards), progress=False, precision="bf16")
    a, b = targets_content(fp32), targets_content(bf16)
    for utt in a:
        for x, y in zip(a[utt], b[utt]):
            assert x.shape == y.shape
            rel = np.linalg.norm(x.astype(np.float32) - y) / np.linalg.norm(x.astype(np.float32))
            assert 0 < rel < 0.05, (utt, rel)  # bf16 really ran, and stays close
    stamp_before = os.path.getmtime(os.path.join(bf16, "shards", "1", ".done"))
    # the same output dir asked at fp32: the bf16 shard's stamp does not match, it is redone
    assert extract_teacher(data, "wavlm_base_plus", bf16, teacher_cards=str(cards), progress=False, precision="fp32")
    assert targets_content(bf16)["u0"][0].tolist() == a["u0"][0].tolist()
    assert os.path.getmtime(os.path.join(bf16, "shards", "1", ".done")) >= stamp_before


def test_demo_teacher_ignores_precision(data_and_reference, tmp_path):
    _, data, ref = data_and_reference
    # basic_pitch runs onnx: "bf16" changes neither its targets nor its stamp (nothing to redo)
    done = os.path.join(ref, "shards", "1", ".done")
    before = os.path.getmtime(done)
    assert extract_teacher(data, "basic_pitch", ref, nj=1, progress=False, precision="bf16")
    assert os.path.getmtime(done) == before


def test_cli_runs_torch_on_the_threads_asked(data_and_reference, tmp_path):
    """--threads sets torch's intra-op threads (the recipe runs nj jobs side by side on the cores)."""
    import torch

    from usad2.bin.extract_teacher import main

    _, data, ref = data_and_reference
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = str(tmp_path / "t")
        assert main(["--data", data, "--teacher", "basic_pitch", "--out", out, "--progress", "false"]) == 0
        assert torch.get_num_threads() == 1  # the default
        assert main(["--data", data, "--teacher", "basic_pitch", "--out", out, "--threads", "2",
                     "--progress", "false"]) == 0
        assert torch.get_num_threads() == 2
        got, want = targets_content(out), targets_content(ref)
        assert sorted(got) == sorted(want)
    finally:
        torch.set_num_threads(before)


def test_cli_rejects_zero_threads(data_and_reference, tmp_path):
    from usad2.bin.extract_teacher import main
    from usad2.errors import ConfigError

    _, data, _ = data_and_reference
    with pytest.raises(ConfigError, match="--threads"):
        main(["--data", data, "--teacher", "basic_pitch", "--out", str(tmp_path / "z"), "--threads", "0"])
