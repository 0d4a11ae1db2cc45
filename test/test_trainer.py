"""The distillation trainer end to end on CPU, with the tiny synthetic teachers of test_distill_task.

Covers issue 5's acceptance: a tiny run beats the training-mean predictor's dev loss by 30 %;
torchrun with 2 processes (DDP and FSDP, gloo) reproduces the single-process loss curve; kill -9
at a random step then rerunning the same command continues the loss sequence exactly, with no
half-written checkpoint; stage 2 and depth up-scaling start from stage-1 weights.
"""
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from test_distill_task import make_data_dir, mean_predictions, write_cards
from usad2.bin.distill import main, parse_args, replay_script
from usad2.data.pipeline import EvalPipeline
from usad2.distill import build, optim
from usad2.distill.trainer import Trainer
from usad2.distill.config import RENAMED, TrainConfig
from usad2.distill.task import EvalAccumulator, TargetStats
from usad2.errors import ConfigError
from usad2.models.checkpoint import TRAIN_FORMAT, model_from_checkpoint
from usad2.models.export import load_export, save_export
from usad2.utils import dist

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHERS = "tiny_speech,tiny_audio,tiny_music"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return {"cards": write_cards(str(root / "cards")),
            "train": make_data_dir(root / "train", n_per_domain=8, seed=1),
            "dev": make_data_dir(root / "dev", n_per_domain=2, seed=2)}


def argv(corpus, out, steps, *extra, dev=True):
    args = ["--train_dir", corpus["train"], "--teachers", TEACHERS, "--teacher_cards", corpus["cards"],
            "--plugins", "test_distill_task", "--out_dir", str(out), "--max_steps", str(steps),
            "--warmup_steps", "5", "--lr", "2e-3", "--batch_seconds", "4", "--crop_seconds", "1.0",
            "--save_every", "4", "--dev_every", "1000", "--dropout", "0", "--log_every", "1000",
            "--precision", "fp32"]  # exact-number tests; bf16 is tested by name below
    return args + (["--dev_dir", corpus["dev"]] if dev else []) + list(extra)


def losses(out):
    """{step: metrics} from metrics.jsonl; a resumed run's later lines replace earlier ones."""
    by_step = {}
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            by_step[m["step"]] = m
    return by_step


def sub_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "test"), REPO, env.get("PYTHONPATH", "")])
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(k, None)
    return env


def test_lr_schedule_by_hand():
    f = [optim.lr_factor(s, 4, 12) for s in range(12)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == 1.0 and f[8] == pytest.approx(0.5) and f[11] == pytest.approx(1 / 8)
    assert optim.lr_factor(8, 4, 12, "cosine") == pytest.approx(0.5)
    assert optim.lr_factor(12, 4, 12, "linear", min_ratio=0.1) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="schedule"):
        optim.lr_factor(5, 4, 12, "step")


def test_replay_script_quotes_and_uses_torchrun():
    text = replay_script(["--out", "exp/a b"], env={"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, cwd="/r")
    assert "cd /r\n" in text
    assert "torchrun --nnodes=2 --nproc-per-node=2 -m usad2.bin.distill --out 'exp/a b'" in text
    single = replay_script(["--out", "x"], env={}, cwd="/r")
    assert "-m usad2.bin.distill --out x" in single and "torchrun" not in single


def mean_predictor_dev_loss(saved):
    """Dev loss (same loss, weights and alignment) of predicting each target dimension's training mean."""
    cfg = TrainConfig.from_saved(saved)
    trainer = Trainer(dataclasses.replace(cfg, out_dir=cfg.out_dir + "_baseline"), dist.DistEnv(), "cpu")
    task, stats = trainer.task, TargetStats()
    for batch in EvalPipeline(cfg.train_dir, batch_seconds=20):
        targets = trainer.train_targets.get(batch)
        for spec in task.specs:
            for key, out in zip(spec.keys(), targets[spec.name][0]):
                stats.add(key, out, targets[spec.name][1])
    stats.finish()
    task.stats = stats
    acc = EvalAccumulator(task)
    for batch in trainer.dev_pipe:
        feats = 1 + (batch.lengths - 400) // 160
        n = trainer.student.config.output_length(feats)
        acc.add(mean_predictions(task, n, int(n.max())), n, trainer.dev_targets.get(batch), batch)
    return acc.result()["loss"]


def test_tiny_run_beats_the_mean_predictor_and_writes_its_outputs(corpus, tmp_path):
    out = str(tmp_path / "exp")
    args = argv(corpus, out, 120, "--batch_seconds", "8", "--lr", "3e-3", "--warmup_steps", "10",
                "--save_every", "40", "--dev_every", "40", "--keep_last", "2", "--target_norm", "standardize")
    assert main(args) == 0
    ckpt_dir = os.path.join(out, "checkpoints")
    assert sorted(os.listdir(ckpt_dir)) == ["best.pt", "last.pt", "step_00000080.pt", "step_00000120.pt"]
    ckpt = torch.load(os.path.join(ckpt_dir, "last.pt"), weights_only=True)
    assert ckpt["step"] == 120 and ckpt["config"]["teachers"] == TEACHERS.split(",")
    assert set(ckpt["heads"]) >= {"tiny_speech:L3.0.weight", "tiny_music:L5.2.bias"}
    assert set(ckpt["target_stats"]) == set(ckpt["head_inputs"])
    assert len(ckpt["rng"]) == 1 and "plan" in ckpt["data"][0]
    assert model_from_checkpoint(ckpt).config.num_layers == 4  # export path reads it
    best = torch.load(os.path.join(ckpt_dir, "best.pt"), weights_only=True)  # survives pruning
    assert best["step"] == ckpt["best"]["step"] and best["dev_history"][-1]["loss"] == ckpt["best"]["loss"]
    assert ckpt["best"]["loss"] == min(d["loss"] for d in ckpt["dev_history"])
    metrics = losses(out)
    assert sorted(metrics) == list(range(1, 121))
    last = metrics[120]
    for key in ("loss", "lr", "grad_norm", "audio_hours", "flops", "loss/tiny_audio:L2", "dev/loss"):
        assert key in last
    assert last["audio_hours"] == pytest.approx(120 * 8 / 3600, rel=0.05)
    assert "usad2.bin.distill" in open(os.path.join(out, "run.sh")).read()
    assert os.listdir(os.path.join(out, "tensorboard"))
    dev = ckpt["dev_history"][-1]["loss"]
    base = mean_predictor_dev_loss(ckpt["config"])
    assert dev < 0.7 * base, (dev, base)


def _run_killed(args, kill_after):
    """Start the command, SIGKILL it once metrics.jsonl has `kill_after` steps; returns the steps seen."""
    out = args[args.index("--out_dir") + 1]
    proc = subprocess.Popen([sys.executable, "-m", "usad2.bin.distill"] + args, env=sub_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(path) and sum(1 for _ in open(path)) >= kill_after:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return len(losses(out))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_kill9_then_rerun_continues_the_loss_sequence_exactly(corpus, tmp_path, precision):
    steps = 14
    ref = str(tmp_path / "ref")
    main(argv(corpus, ref, steps, "--save_every", "3", "--precision", precision, dev=False))
    killed = str(tmp_path / "killed")
    args = argv(corpus, killed, steps, "--save_every", "3", "--precision", precision, dev=False)
    seen = _run_killed(args, random.Random().randint(4, 11))
    assert seen < steps
    for name in os.listdir(os.path.join(killed, "checkpoints")):  # whatever exists is complete
        if name.endswith(".pt"):
            assert torch.load(os.path.join(killed, "checkpoints", name), weights_only=True)["format"] == TRAIN_FORMAT
    main(args)  # the same command again: resumes from the newest checkpoint
    a, b = losses(ref), losses(killed)
    assert sorted(b) == list(range(1, steps + 1))
    assert [a[s]["loss"] for s in a] == [b[s]["loss"] for s in a]
    assert [a[s]["lr"] for s in a] == [b[s]["lr"] for s in a]
    main(args)  # finished: rerunning does nothing
    assert len(losses(killed)) == steps


def _torchrun(args, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "usad2.bin.distill"] + args
    res = subprocess.run(cmd, env=sub_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]


@pytest.mark.parametrize("fsdp", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["ddp", "fsdp"])
def test_two_processes_give_the_single_process_loss_curve(corpus, tmp_path, fsdp):
    steps = 20
    single = str(tmp_path / "single")
    extra = ["--save_every", "10", "--fsdp", str(fsdp).lower()]
    main(argv(corpus, single, steps, *extra, dev=False))
    multi = str(tmp_path / "multi")
    _torchrun(argv(corpus, multi, steps, *extra, dev=False))
    a, b = losses(single), losses(multi)
    assert sorted(b) == list(range(1, steps + 1))
    for s in a:
        assert b[s]["loss"] == pytest.approx(a[s]["loss"], rel=1e-4), s
        assert b[s]["audio_hours"] == pytest.approx(a[s]["audio_hours"], rel=1e-9)
    ckpt = torch.load(os.path.join(multi, "checkpoints", "last.pt"), weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["step"] == steps
    assert "torchrun" in open(os.path.join(multi, "run.sh")).read()
    if fsdp:  # resuming restores the full (unsharded) model and optimizer state into the shards
        _torchrun(argv(corpus, multi, steps + 2, *extra, dev=False))
        c = losses(multi)
        assert sorted(c) == list(range(1, steps + 3)) and all(0 < c[s]["loss"] < 50 for s in (21, 22))


@pytest.fixture(scope="module")
def stage1(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stage1") / "exp")
    main(argv(corpus, out, 4, dev=False))
    return os.path.join(out, "checkpoints", "last.pt")


def _encoder(path):
    obj = torch.load(path, weights_only=True)
    return obj["model"] if "model" in obj else obj["state_dict"]


def test_stage2_from_checkpoint_drops_stage1_heads(corpus, stage1, tmp_path):
    out = str(tmp_path / "plus")
    main(argv(corpus, out, 1, "--init", stage1, "--stage2_teachers", "tiny_music", "--lr", "1e-12", dev=False))
    ckpt = torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)
    assert ckpt["head_inputs"] == {"tiny_music:L5": 4}
    assert {k.split(".")[0] for k in ckpt["heads"]} == {"tiny_music:L5"}
    src = _encoder(stage1)
    for k, v in ckpt["model"].items():
        assert torch.allclose(v, src[k], atol=1e-6), k


def test_init_architecture_is_the_inits_and_student_must_agree(corpus, stage1, tmp_path):
    # stage 2 from a tiny stage-1 model: the run records no preset of its own (it used to say "tiny"
    # whatever the init was), a matching --student is accepted, another architecture is refused
    out = str(tmp_path / "plus_arch")
    main(argv(corpus, out, 1, "--init", stage1, "--stage2_teachers", "tiny_music", "--lr", "1e-12", dev=False))
    assert torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)["config"]["student"] is None
    assert TrainConfig(train_dir="x", out_dir="o").student == "tiny"
    model, init = build.build_student(TrainConfig(train_dir="x", out_dir="o", init=stage1, student="tiny"))
    assert model.config.num_layers == init.model_config["num_layers"] == 4
    with pytest.raises(ConfigError, match=r"--student mini is not the architecture of --init .*d_model 64 vs 192"):
        build.build_student(TrainConfig(train_dir="x", out_dir="o", init=stage1, student="mini"))
    # up-scaling changes the depth only: the preset's depth is not compared then
    build.build_student(TrainConfig(train_dir="x", out_dir="o", init=stage1, student="tiny", upscale_ranges="1-4,2-4"))
    # a run recorded before the rule (init + "tiny") resumes under the new spelling (init + None)
    old = TrainConfig(train_dir="x", out_dir="o", init=stage1, student="tiny")
    assert TrainConfig(train_dir="x", out_dir="o", init=stage1).identity_changes(old) == []
    assert TrainConfig(train_dir="x", out_dir="o", student="mini").identity_changes(TrainConfig(train_dir="x", out_dir="o")) == [
        ("student", "tiny", "mini")]


def test_stage2_keeping_stage1_heads(corpus, stage1, tmp_path):
    out = str(tmp_path / "plus_keep")
    main(argv(corpus, out, 1, "--init", stage1, "--stage2_teachers", "tiny_music", "--drop_stage1", "false",
              "--teachers", "tiny_speech", "--lr", "1e-12", "--stage2_student_layer", "3", dev=False))
    ckpt = torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)
    assert ckpt["head_inputs"] == {"tiny_speech:L1": 1, "tiny_speech:L2": 2, "tiny_speech:L3": 4,
                                   "tiny_music:L5": 3}
    old = torch.load(stage1, weights_only=True)["heads"]
    assert torch.allclose(ckpt["heads"]["tiny_speech:L3.0.weight"], old["tiny_speech:L3.0.weight"], atol=1e-6)
    # with --drop_stage1 false every head whose key and shape match is taken over, the stage-2 one too
    assert torch.allclose(ckpt["heads"]["tiny_music:L5.2.weight"], old["tiny_music:L5.2.weight"], atol=1e-6)


def test_upscaled_stage2_keeps_stage1_heads_on_copies_of_their_layers(corpus, stage1, tmp_path):
    # the paper's order: up-scale the stage-1 model (4 -> 7 layers; 5-7 copy 2-4), then stage 2 keeping
    # the stage-1 heads on the copies of their layers: no moved-head warning, the heads taken over
    out = str(tmp_path / "plus_upscaled")
    main(argv(corpus, out, 1, "--init", stage1, "--upscale_ranges", "1-4,2-4", "--stage2_teachers", "tiny_music",
              "--drop_stage1", "false", "--teachers", "tiny_speech", "--student_layers", "tiny_speech=1,2,7",
              "--lr", "1e-12", dev=False))
    ckpt = torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)
    assert ckpt["model_config"]["num_layers"] == 7
    assert ckpt["head_inputs"]["tiny_speech:L3"] == 7
    old = torch.load(stage1, weights_only=True)["heads"]
    assert torch.allclose(ckpt["heads"]["tiny_speech:L3.0.weight"], old["tiny_speech:L3.0.weight"], atol=1e-6)
    with open(os.path.join(out, "distill.log")) as f:
        log = f.read()
    assert "heads taken from the init checkpoint: tiny_music:L5, tiny_speech:L1" in log
    assert "heads now read other student layers" not in log
    moved = str(tmp_path / "plus_moved")
    main(argv(corpus, moved, 1, "--init", stage1, "--upscale_ranges", "1-4,2-4", "--stage2_teachers", "tiny_music",
              "--drop_stage1", "false", "--teachers", "tiny_speech", "--student_layers", "tiny_speech=1,2,6",
              "--lr", "1e-12", dev=False))
    with open(os.path.join(moved, "distill.log")) as f:
        assert "tiny_speech:L3 (layer 4 -> 6, a copy of layer 3)" in f.read()


def test_upscaled_export_continues_stage1(corpus, stage1, tmp_path):
    export = str(tmp_path / "model.pt")
    save_export(model_from_checkpoint(torch.load(stage1, weights_only=True)), export)
    out = str(tmp_path / "deeper")
    main(argv(corpus, out, 1, "--init", export, "--upscale_ranges", "1-4,2-4", "--lr", "1e-12", dev=False))
    ckpt = torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)
    assert ckpt["model_config"]["num_layers"] == 7
    src = _encoder(export)
    new = ckpt["model"]
    for i, j in [(0, 0), (3, 3), (4, 1), (6, 3)]:
        w = f"encoder.layers.{i}.ffn.fc1.weight"
        assert torch.allclose(new[w], src[f"encoder.layers.{j}.ffn.fc1.weight"], atol=1e-6)
    # K=4 pairs on 7 layers: student layers floor(k*7/4) = 1, 3, 5, 7; explicit 3 layers: 2, 4, 7
    assert [ckpt["head_inputs"][f"tiny_music:L{t}"] for t in (1, 2, 3, 5)] == [1, 3, 5, 7]
    assert [ckpt["head_inputs"][f"tiny_speech:L{t}"] for t in (1, 2, 3)] == [2, 4, 7]
    assert load_export(export).config.num_layers == 4


def test_rerun_with_other_options_is_refused(corpus, stage1):
    out = os.path.dirname(os.path.dirname(stage1))
    with pytest.raises(ConfigError, match="teachers"):
        main(argv(corpus, out, 8, "--teachers", "tiny_speech", dev=False))


def test_checkpoint_with_an_old_dict_config_resumes(corpus, tmp_path):
    """A step file whose config predates the typed config (old option names, no probability_targets
    key) is the same experiment to today's command: the rerun resumes it instead of refusing."""
    out = str(tmp_path / "old")
    main(argv(corpus, out, 2, "--save_every", "2", dev=False))
    path = os.path.join(out, "checkpoints", "step_00000002.pt")
    ckpt = torch.load(path, weights_only=True)
    for old, new in RENAMED.items():
        ckpt["config"][old] = ckpt["config"].pop(new)
    del ckpt["config"]["probability_targets"]
    torch.save(ckpt, path)
    main(argv(corpus, out, 3, "--save_every", "2", dev=False))
    assert sorted(losses(out)) == [1, 2, 3]
    saved = torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)["config"]
    assert saved["train_dir"] == corpus["train"] and "train_data" not in saved


def test_config_file_and_init_dir(tmp_path, stage1):
    cfg = tmp_path / "distill.yaml"
    cfg.write_text("max_steps: 7\nteachers: [a, b]\nstudent: small\nlr: 0.001\n")
    args = parse_args(["--config", str(cfg), "--train_dir", "tr", "--out_dir", "o", "--lr", "0.5",
                       "--init", os.path.dirname(os.path.dirname(stage1))])
    assert (args.max_steps, args.teachers, args.student, args.lr) == (7, ["a", "b"], "small", 0.5)
    assert (args.train_dir, args.out_dir) == ("tr", "o")
    assert args.init == stage1  # an experiment dir means its last.pt (no best.pt without dev)
    assert parse_args(["--train_dir", "t", "--out_dir", "o", "--targets_dir", "x",
                       "--teacher_mode", "online"]).targets_dir is None
    with pytest.raises(ConfigError, match="needs --targets_dir"):
        parse_args(["--train_dir", "t", "--out_dir", "o", "--teacher_mode", "offline"])
    cfg.write_text("max_stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown option 'max_stepz'"):
        parse_args(["--config", str(cfg), "--train_dir", "t", "--out_dir", "o"])
    with pytest.raises(ConfigError, match="--out_dir is required"):
        parse_args(["--train_dir", "t"])


@pytest.mark.parametrize("old, new", sorted(RENAMED.items()))
def test_old_option_spellings_fail_naming_the_new_one(tmp_path, capsys, old, new):
    """One name per option (issue 13 item 2): --train_data, --dev_data, --preset, --out stop at once."""
    with pytest.raises(SystemExit) as e:
        parse_args(["--train_dir", "t", "--out_dir", "o", f"--{old}", "x"])
    assert e.value.code == 2 and f"--{old} was renamed --{new}" in capsys.readouterr().err
    conf = tmp_path / "old.yaml"
    conf.write_text(f"{old}: x\n")
    with pytest.raises(ConfigError, match=f"old.yaml: option '{old}' was renamed '{new}'"):
        parse_args(["--config", str(conf), "--train_dir", "t", "--out_dir", "o"])
    assert f"--{old} " not in parse_args.__globals__["build_parser"]().format_help()


def test_bf16_autocast_and_grad_accum_on_cpu(corpus, tmp_path):
    out = str(tmp_path / "bf16")
    main(argv(corpus, out, 3, "--precision", "bf16", "--grad_accum", "2", dev=False))
    rows = losses(out)
    assert sorted(rows) == [1, 2, 3] and all(0 < r["loss"] < 50 for r in rows.values())
    # two micro-batches of 4 s per step
    assert rows[3]["audio_hours"] == pytest.approx(3 * 2 * 4 / 3600, rel=0.05)


def test_param_groups_scale_the_heads_learning_rate_only():
    model = torch.nn.Module()
    model.student = torch.nn.Linear(4, 3)
    model.heads = torch.nn.ModuleDict({"t:L1": torch.nn.Linear(3, 2)})
    two = optim.param_groups(model, 1e-3, 0.01)
    assert [(len(g["params"]), g["lr"], g["weight_decay"]) for g in two] == [(2, 1e-3, 0.01), (2, 1e-3, 0.0)]
    wrapped = torch.nn.Module()
    wrapped.module = model  # DDP's parameter names: "module.heads...."
    four = optim.param_groups(wrapped, 1e-3, 0.01, head_lr_scale=5.0)
    assert [(g["params"][0].shape, g["lr"], g["weight_decay"]) for g in four] == [
        (torch.Size([3, 4]), 1e-3, 0.01), (torch.Size([3]), 1e-3, 0.0),
        (torch.Size([2, 3]), pytest.approx(5e-3), 0.01), (torch.Size([2]), pytest.approx(5e-3), 0.0)]


def test_linear_heads_train_and_are_saved_as_linear(corpus, tmp_path):
    out = str(tmp_path / "linear")
    main(argv(corpus, out, 2, "--head_hidden", "0", dev=False))
    ckpt = torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)
    assert ckpt["heads"] and {k.split(".", 1)[1] for k in ckpt["heads"]} == {"0.weight", "0.bias"}
    assert all(0 < r["loss"] < 50 for r in losses(out).values())
    # stage 2 keeping the stage-1 heads, --head_hidden unset: the heads stay linear and continue;
    # a rerun with more steps resumes them (strict load) without the option either
    plus = str(tmp_path / "plus")
    args = argv(corpus, plus, 1, "--init", os.path.join(out, "checkpoints", "last.pt"), "--stage2_teachers",
                "tiny_music", "--drop_stage1", "false", "--teachers", "tiny_speech", "--lr", "1e-12", dev=False)
    main(args)
    kept = torch.load(os.path.join(plus, "checkpoints", "last.pt"), weights_only=True)["heads"]
    assert build.heads_hidden(kept) == 0 and build.heads_hidden(ckpt["heads"]) == 0
    key = "tiny_speech:L2.0.weight"
    assert torch.allclose(kept[key], ckpt["heads"][key], atol=1e-6)
    main(args[:args.index("--max_steps") + 1] + ["2"] + args[args.index("--max_steps") + 2:])
    assert sorted(losses(plus)) == [1, 2]


def test_demo_default_configs_are_the_papers_plus_the_harmony_options(repo_dir):
    """The demo's default method = the paper's configs plus the three options of RESULTS.md 2.3 and
    the speech teacher's weight x3 of 2.17, stage 1 trains the 2400 steps of 2.4 (the paper's
    config keeps the 1500 it was measured at) and stage 2's new heads read the second-to-last layer
    (2.10)."""
    conf = os.path.join(repo_dir, "egs", "multidomain", "conf")
    read = {n: parse_args(["--config", os.path.join(conf, n + ".yaml"), "--train_dir", "t", "--out_dir",
                           "o"]).to_dict() for n in ("distill_default", "distill_default_paper", "plus_default",
                                                     "plus_default_paper", "distill_tiny", "plus_tiny")}
    # the harmony options of 2.3 and speech_embedding's loss weight x3 of 2.17
    harmony = {"head_hidden": 0, "probability_targets": "mse", "student_layers": "basic_pitch=1,2,3",
               "teacher_weights": "speech_embedding=3.0"}
    for run, paper in (("distill_default", "distill_default_paper"), ("plus_default", "plus_default_paper")):
        changed = {k: v for k, v in read[run].items() if v != read[paper][k] and k != "config"}
        extra = {"max_steps": 2400} if run == "distill_default" else {"stage2_student_layer": -2}
        assert changed == dict(harmony, **extra), run
    assert read["distill_default_paper"]["probability_targets"] == "raw"  # the library's defaults
    assert read["distill_default_paper"]["head_hidden"] is None and read["distill_default_paper"]["student_layers"] is None
    assert read["plus_default_paper"]["stage2_student_layer"] == -1  # the paper's: the last layer
    for tiny in ("distill_tiny", "plus_tiny"):  # CI's size runs the same method
        assert {k: read[tiny][k] for k in harmony} == harmony
    assert read["plus_tiny"]["stage2_student_layer"] == -2


def test_student_layers_move_a_teachers_heads_and_a_continuation_is_warned(corpus, stage1, tmp_path):
    out = str(tmp_path / "moved")
    main(argv(corpus, out, 1, "--student_layers", "tiny_speech=2,3,3", dev=False))
    ckpt = torch.load(os.path.join(out, "checkpoints", "last.pt"), weights_only=True)
    assert {k: v for k, v in ckpt["head_inputs"].items() if k.startswith("tiny_speech")} == {
        "tiny_speech:L1": 2, "tiny_speech:L2": 3, "tiny_speech:L3": 3}
    default = torch.load(stage1, weights_only=True)["head_inputs"]  # the same run without the option
    assert default["tiny_speech:L1"] == 1
    assert {k: v for k, v in ckpt["head_inputs"].items() if not k.startswith("tiny_speech")} == {
        k: v for k, v in default.items() if not k.startswith("tiny_speech")}
    # a stage 2 that keeps tiny_speech without repeating the option: its heads read other layers now
    plus = str(tmp_path / "plus")
    main(argv(corpus, plus, 1, "--init", os.path.join(out, "checkpoints", "last.pt"), "--stage2_teachers",
              "tiny_music", "--drop_stage1", "false", "--teachers", "tiny_speech", dev=False))
    with open(os.path.join(plus, "distill.log")) as f:
        warned = [line for line in f if "WARNING" in line]
    assert len(warned) == 1 and "tiny_speech:L1 (layer 2 -> 1)" in warned[0] and "(layer 3 -> 4)" in warned[0]
    # a card that is not in this run is ignored with a warning (a config shared by runs with other
    # teachers); a name that is no card is an error
    other = str(tmp_path / "other")
    main(argv(corpus, other, 1, "--teachers", "tiny_speech,tiny_audio", "--student_layers", "tiny_music=1,2,3",
              dev=False))
    with open(os.path.join(other, "distill.log")) as f:
        assert "--student_layers names tiny_music, not among this run's stage-1 teachers" in f.read()
    with pytest.raises(ConfigError, match="--student_layers names tiny_other, .*no teacher card: unknown teacher .tiny_other."):
        main(argv(corpus, str(tmp_path / "bad"), 1, "--student_layers", "tiny_other=1,2,3", dev=False))
    with pytest.raises(ConfigError, match="not NAME=LAYER"):
        parse_args(["--train_dir", "t", "--out_dir", "o", "--student_layers", "tiny_speech:1,2,3"])
    # one map, one spelling: a resume with the map written differently is the same experiment
    canonical = TrainConfig(train_dir="t", out_dir="o", student_layers=" yamnet=2,3, 4 ;basic_pitch=1,2,3")
    assert canonical.student_layers == "basic_pitch=1,2,3;yamnet=2,3,4"
    assert TrainConfig(train_dir="t", out_dir="o", student_layers={"yamnet": [2, 3, 4], "basic_pitch": [1, 2, 3]}
                       ).identity_changes(canonical) == []


def test_kept_heads_on_copies_of_their_layers_after_upscaling_are_not_moved():
    # 6 -> 8 layers by 1-4,3-6: new layers 5-8 copy 3, 4, 5, 6
    cfg = TrainConfig(train_dir="t", out_dir="o", upscale_ranges="1-4,3-6")
    sources = build.upscaled_sources(cfg, 6)
    assert sources == {1: 1, 2: 2, 3: 3, 4: 4, 5: 3, 6: 4, 7: 5, 8: 6}
    assert build.upscaled_sources(TrainConfig(train_dir="t", out_dir="o"), 6) is None
    init = {"head_inputs": {"sp:L1": 2, "sp:L2": 4, "sp:L3": 6}}
    keys = ["sp:L1", "sp:L2", "sp:L3"]
    assert build.kept_head_changes(init, keys, {"sp:L1": 2, "sp:L2": 6, "sp:L3": 8}, set(), cfg, sources) == []
    assert build.kept_head_changes(init, keys, {"sp:L1": 2, "sp:L2": 5, "sp:L3": 8}, set(), cfg, sources) == [
        "heads now read other student layers: sp:L2 (layer 4 -> 5, a copy of layer 3) (see --student_layers)"]
    # without the layer map the same layers count as moved
    assert "sp:L2 (layer 4 -> 6)" in build.kept_head_changes(init, keys, {"sp:L1": 2, "sp:L2": 6, "sp:L3": 8},
                                                             set(), cfg)[0]


def test_kept_probability_heads_in_other_units_are_named():
    init = {"config": {"probability_targets": "mse"}, "head_inputs": {"bp:L1": 1, "sp:L1": 1}}
    cfg = TrainConfig(train_dir="t", out_dir="o")  # probability_targets raw
    problems = build.kept_head_changes(init, ["bp:L1", "sp:L1"], {"bp:L1": 1, "sp:L1": 1}, {"bp:L1"}, cfg)
    assert problems == ["it fitted probability targets with --probability_targets mse, this run with raw: "
                        "the kept heads bp:L1 change units"]
    same = TrainConfig(train_dir="t", out_dir="o", probability_targets="mse")
    assert build.kept_head_changes(init, ["bp:L1", "sp:L1"], {"bp:L1": 1, "sp:L1": 1}, {"bp:L1"}, same) == []
