"""Fault tests (issue 8 §2): kill -9 at random moments, and a full disk.

- kill -9 at random wall-clock moments (not only at step or shard boundaries: also while a
  shard, checkpoint or metrics line is being written) of teacher extraction, of training and of
  the tiny demo recipe (stages 0-7, its whole process group), over several seeds, then the
  same command again: the artefacts equal those of an uninterrupted run (slow tier).
- Disk full, simulated with RLIMIT_FSIZE in the child process (chmod does not stop root; a
  write beyond the limit fails with EFBIG exactly as ENOSPC would, since Python ignores
  SIGXFSZ): the command exits 1 with one `usad2 error:` line (no traceback), and what was
  complete before (an extracted shard, an existing data dir, an existing export) is intact.
"""
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import copy_recipe_tree
from usad2.bin.extract_teacher import extract_teacher
from usad2.data.datadir import DataDir, load_data_dir
from usad2.models.export import load_export, save_export
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model
from usad2.targets.store import TargetsReader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_SEEDS = [11, 23, 37]


def sub_env(teacher_cache=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "test"), REPO, env.get("PYTHONPATH", "")])
    if teacher_cache:
        env["USAD2_CACHE"] = teacher_cache
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(k, None)
    return env


def run_with_file_limit(cmd, limit_bytes, env):
    """Run `cmd` with RLIMIT_FSIZE = limit_bytes (the 'disk' fills at that file size)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return subprocess.run(cmd, env=env, preexec_fn=limit, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=300, check=False)


def assert_clear_disk_full_error(proc, names=None):
    """Exit status 1 and a last stderr line `usad2 error: ... disk full ...` (naming `names`), no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-1].startswith("usad2 error: File too large (errno EFBIG)")
    assert "disk full or file size limit" in lines[-1]
    if names is not None:
        assert f"writing {names}:" in lines[-1], lines[-1]


def kill_at(cmd, env, delay):
    """Start cmd, SIGKILL it after `delay` seconds (if still running); True if it was killed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def kill_repeatedly(cmd, env, out, full, rng, kills=3):
    """kill -9 the command `kills` times at random moments; returns how many runs were killed.

    The first kill must land (a run that finished first is deleted and retried with a shorter
    delay); the later ones hit resumed runs, which may also finish before their moment.
    """
    hi = 0.9
    while not kill_at(cmd, env, rng.uniform(0.2, hi) * full):
        shutil.rmtree(out, ignore_errors=True)
        hi = max(0.3, hi / 2)
    return 1 + sum(kill_at(cmd, env, rng.uniform(0.1, 0.9) * full) for _ in range(kills - 1))


def timed_run(cmd, env):
    t0 = time.time()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.time() - t0


# ------------------------------------------------------------------------------- extraction


@pytest.fixture(scope="module")
def extraction(tmp_path_factory, teacher_cache):
    """A 5-utterance data dir and its complete basic_pitch targets (in-process reference)."""
    from test_extract_teacher import make_data

    root = tmp_path_factory.mktemp("faults_extract")
    os.environ["USAD2_CACHE"] = teacher_cache
    data = make_data(root)
    ref = str(root / "ref")
    assert extract_teacher(data, "basic_pitch", ref, nj=1, progress=False)
    return data, ref


def targets_content(out):
    reader = TargetsReader(out)
    return {u: reader.get(u) for u in reader.utterances()}


def assert_same_targets(got_dir, want_dir):
    got, want = targets_content(got_dir), targets_content(want_dir)
    assert sorted(got) == sorted(want)
    for utt in want:
        for a, b in zip(got[utt], want[utt]):
            assert np.array_equal(a, b), utt


def extract_cmd(data, out, *extra):
    return [sys.executable, "-m", "usad2.bin.extract_teacher", "--data", data, "--teacher", "basic_pitch",
            "--out", out, "--progress", "false", *extra]


def test_extraction_disk_full_keeps_the_finished_shard(extraction, tmp_path, teacher_cache):
    data, ref = extraction
    out = str(tmp_path / "targets")
    assert not extract_teacher(data, "basic_pitch", out, nj=2, job=1, progress=False)
    shard1 = os.path.join(out, "shards", "1")
    before = {name: open(os.path.join(shard1, name), "rb").read() for name in os.listdir(shard1)}
    # shard 2's first ark entry (~100 frames x 264 float16) is larger than 16 KB
    proc = run_with_file_limit(extract_cmd(data, out, "--nj", "2", "--job", "2"), 16 * 1024,
                               sub_env(teacher_cache))
    assert_clear_disk_full_error(proc)
    after = {name: open(os.path.join(shard1, name), "rb").read() for name in os.listdir(shard1)}
    assert after == before
    assert not os.path.exists(os.path.join(out, "shards", "2", ".done"))
    assert not os.path.exists(os.path.join(out, "meta.json"))
    # space is back: the same command completes and equals an uninterrupted run
    assert extract_teacher(data, "basic_pitch", out, nj=2, job=2, progress=False)
    assert_same_targets(out, ref)


@pytest.mark.slow
@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_extraction_kill9_at_random_moments(extraction, tmp_path, teacher_cache, seed):
    """Kill at up to 3 random moments of one extraction (3 shards), rerun: equal targets."""
    data, ref = extraction
    env = sub_env(teacher_cache)
    cmd = extract_cmd(data, str(tmp_path / "warm"), "--nj", "3")
    full = timed_run(cmd, env)  # how long a whole run takes here (also warms the page cache)
    rng = random.Random(seed)
    out = str(tmp_path / "targets")
    cmd = extract_cmd(data, out, "--nj", "3")
    kill_repeatedly(cmd, env, out, full, rng)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert_same_targets(out, ref)
    assert not [n for n in os.listdir(os.path.join(out, "shards")) if n.endswith(".tmp")]


# --------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def train_corpus(tmp_path_factory):
    from test_distill_task import make_data_dir, write_cards

    root = tmp_path_factory.mktemp("faults_train")
    return {"cards": write_cards(str(root / "cards")),
            "train": make_data_dir(root / "train", n_per_domain=6, seed=1)}


def distill_cmd(corpus, out, steps):
    return [sys.executable, "-m", "usad2.bin.distill", "--train_dir", corpus["train"],
            "--teachers", "tiny_speech,tiny_audio,tiny_music", "--teacher_cards", corpus["cards"],
            "--plugins", "test_distill_task", "--out_dir", out, "--max_steps", str(steps),
            "--warmup_steps", "3", "--lr", "2e-3", "--batch_seconds", "4", "--crop_seconds", "1.0",
            "--save_every", "2", "--dev_every", "1000", "--log_every", "1000"]


def loss_sequence(out):
    import json

    by_step = {}
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            by_step[m["step"]] = (m["loss"], m["lr"])
    return [by_step[s] for s in sorted(by_step)]


@pytest.mark.slow
@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_training_kill9_at_random_moments(train_corpus, tmp_path, seed):
    """Up to 3 kills at random moments (mid-step, mid-checkpoint...), rerun: same losses, weights."""
    steps, env = 10, sub_env()
    ref = str(tmp_path / "ref")
    full = timed_run(distill_cmd(train_corpus, ref, steps), env)
    rng = random.Random(seed)
    out = str(tmp_path / "killed")
    cmd = distill_cmd(train_corpus, out, steps)
    kill_repeatedly(cmd, env, out, full, rng)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert loss_sequence(out) == loss_sequence(ref)
    a = torch.load(os.path.join(ref, "checkpoints", "last.pt"), weights_only=True)
    b = torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)
    assert a["step"] == b["step"] == steps
    for part in ("model", "heads"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert not [n for n in os.listdir(os.path.join(out, "checkpoints")) if n.endswith(".tmp")]


# ------------------------------------------------------------------------ data dir, export


def test_data_dir_write_disk_full_keeps_the_old_dir(tmp_path):
    old = tmp_path / "old"
    DataDir({"a1": "/x/a1.wav", "a2": "/x/a2.wav"}, utt2domain={"a1": "speech", "a2": "speech"}).write(old)
    big = tmp_path / "big"
    wav = {f"b{i:05d}": f"/corpus/some/long/path/b{i:05d}.wav" for i in range(3000)}  # ~130 KB
    DataDir(wav, utt2domain={u: "audio" for u in wav}).write(big)
    out = tmp_path / "out"
    DataDir({"a1": "/x/a1.wav"}).write(out)
    before = {p: open(os.path.join(out, p), "rb").read() for p in os.listdir(out)}
    cmd = [sys.executable, "-m", "usad2.bin.combine_data", str(out), str(old), str(big)]
    proc = run_with_file_limit(cmd, 32 * 1024, sub_env())
    assert_clear_disk_full_error(proc, names=str(out))
    assert {p: open(os.path.join(out, p), "rb").read() for p in os.listdir(out)} == before
    assert load_data_dir(str(out)).utt_ids == ["a1"]
    assert sorted(os.listdir(tmp_path)) == ["big", "old", "out"]  # no temporary dir left behind
    subprocess.run(cmd, env=sub_env(), check=True, capture_output=True)  # space is back
    assert len(load_data_dir(str(out))) == 3002


def test_export_disk_full_keeps_the_old_export(tmp_path):
    torch.manual_seed(0)
    old_model = Usad2Model(get_preset("tiny"))
    out = tmp_path / "model.pt"
    save_export(old_model, out)
    before = out.read_bytes()
    torch.manual_seed(1)
    new_model = Usad2Model(get_preset("small", num_layers=2))
    ckpt = tmp_path / "new.pt"
    save_export(new_model, ckpt)
    cmd = [sys.executable, "-m", "usad2.bin.export", "--checkpoint", str(ckpt), "--out", str(out), "--force", "true"]
    proc = run_with_file_limit(cmd, 1024 * 1024, sub_env())  # the new export is ~30 MB
    assert_clear_disk_full_error(proc, names=str(out))
    assert out.read_bytes() == before
    reloaded = load_export(out)
    assert reloaded.config.num_layers == old_model.config.num_layers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "new.pt"]
    subprocess.run(cmd, env=sub_env(), check=True, capture_output=True)
    assert load_export(out).config.num_layers == 2


# ----------------------------------------------------------------------------------- recipe


RECIPE_CMD = ["./run.sh", "--demo_size", "tiny", "--tag", "faults", "--stop_stage", "7"]


def run_recipe(recipe, env, delay=None):
    """Run the tiny recipe (stages 0-7); with `delay`, kill -9 its whole process group then.

    Returns True when it was killed. The recipe's stage processes and launcher jobs are in the
    group, so nothing keeps running after the kill.
    """
    proc = subprocess.Popen(RECIPE_CMD, cwd=recipe, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=delay if delay is not None else 1200)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return True
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return False


def recipe_artefacts(recipe):
    """{relative path: content} of the recipe's outputs, machine paths and volatile logs removed.

    Text files have the copy's root replaced by <root>; logs, TensorBoard events, timing fields
    and .done stamps (which hold absolute input paths) are left out; checkpoints and targets
    are compared by value elsewhere.
    """
    import hashlib

    root = str(recipe.parent.parent)
    out = {}
    for top in ("data", "dump"):
        for dirpath, _, files in os.walk(recipe / top):
            for name in files:
                if name.endswith((".log", ".done")) or "/log" in dirpath or name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                data = open(path, "rb").read()
                if name.endswith((".wav", ".ark", ".flac", ".mid")):
                    out[os.path.relpath(path, recipe)] = hashlib.sha256(data).hexdigest()
                else:
                    out[os.path.relpath(path, recipe)] = data.decode(errors="replace").replace(root, "<root>")
    return out


def recipe_results(recipe):
    """(artefacts, loss sequence, export state dict, targets) of a finished recipe run."""
    exp = recipe / "exp" / "faults"
    export = torch.load(exp / "export" / "model.pt", weights_only=True)["state_dict"]
    targets = {}
    for meta in (recipe / "dump" / "targets").glob("*/*/meta.json"):
        targets[str(meta.parent.relative_to(recipe))] = targets_content(str(meta.parent))
    return recipe_artefacts(recipe), loss_sequence(str(exp)), export, targets


@pytest.fixture(scope="module")
def recipe_reference(tmp_path_factory, teacher_cache):
    repo = tmp_path_factory.mktemp("recipe_ref")
    recipe = copy_recipe_tree(repo / "repo", REPO)
    env = sub_env(teacher_cache)
    t0 = time.time()
    run_recipe(recipe, env)
    return time.time() - t0, recipe_results(recipe)


@pytest.mark.slow
@pytest.mark.recipe
@pytest.mark.parametrize("seed", KILL_SEEDS[:2])
def test_recipe_kill9_at_random_moments(recipe_reference, tmp_path, teacher_cache, seed):
    """kill -9 the tiny recipe (whole process group) twice at random moments, rerun: same outputs."""
    full, (want_files, want_losses, want_export, want_targets) = recipe_reference
    env = sub_env(teacher_cache)
    rng = random.Random(seed)
    fraction = rng.uniform(0.1, 0.8)
    # the first kill must land: when the machine is faster than while the reference ran (the
    # recipe finished first), start again in a fresh copy, timed against that faster run
    for attempt in range(3):
        recipe = copy_recipe_tree(tmp_path / f"repo{attempt}", REPO)
        t0 = time.time()
        if run_recipe(recipe, env, fraction * full):
            break
        full = time.time() - t0
    else:
        pytest.fail(f"the recipe finished before {fraction:.2f} of its run time three times")
    run_recipe(recipe, env, rng.uniform(0.1, 0.9) * full)  # a resumed run, killed again if not done
    run_recipe(recipe, env)
    files, losses, export, targets = recipe_results(recipe)
    assert sorted(files) == sorted(want_files)
    assert [k for k in want_files if files[k] != want_files[k]] == []
    assert losses == want_losses
    assert export.keys() == want_export.keys()
    assert all(torch.equal(export[k], want_export[k]) for k in want_export)
    assert targets.keys() == want_targets.keys()
    for name, content in want_targets.items():
        for utt, arrays in content.items():
            assert all(np.array_equal(a, b) for a, b in zip(targets[name][utt], arrays)), (name, utt)
