"""The recipe's options (egs/TEMPLATE/usad2.sh through egs/multidomain/run.sh), without running stages.

A copy of the recipe runs with an interpreter wrapper that records each `-m usad2.bin.*` call's
arguments instead of running it, so the test checks exactly what every stage would run: the
experiment dirs the tag names, the configs, the teachers, K, the card folder and the ablation
options.
"""
import subprocess
import sys

import pytest

from conftest import copy_recipe_tree


@pytest.fixture
def recorded_recipe(tmp_path, repo_dir):
    """A copy of the recipe whose --python records `-m usad2.bin.*` calls instead of running them."""
    recipe = copy_recipe_tree(tmp_path / "repo", repo_dir)
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    # torchrun (--nproc > 1) is unwrapped: its options go to launches.txt, the verb's call to calls.txt
    fake.write_text(f"#!/usr/bin/env bash\nif [ \"$1\" = -m ] && [ \"$2\" = torch.distributed.run ]; then\n"
                    f"  shift 2; launch=torchrun\n"
                    f"  while [ $# -gt 0 ] && [ \"$1\" != -m ]; do launch+=\" $1\"; shift; done\n"
                    f"  echo \"$launch $2\" >> {tmp_path / 'launches.txt'}\nfi\n"
                    f"if [ \"$1\" = -m ] && [[ \"$2\" == usad2.bin.* ]]; then\n"
                    f"  echo \"$*\" >> {calls}; exit 0\nfi\nexec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    return recipe, fake, calls


def _recipe(recorded, *args):
    recipe, fake, calls = recorded
    for old in (calls, calls.parent / "launches.txt"):
        if old.exists():
            old.unlink()
    r = subprocess.run(["./run.sh", "--python", str(fake), "--stage", "5", "--stop_stage", "8", *args],
                       cwd=recipe, capture_output=True, text=True, timeout=120)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return r, {line.split()[1].split(".")[-1]: line.split() for line in reversed(lines)}, lines


def _val(words, name):
    return words[words.index(name) + 1]


def test_recipe_defaults_run_both_stages(recorded_recipe):
    """The default run is the paper's full method: stage 1, stage 2 from it, the stage-2 export."""
    r, verbs, lines = _recipe(recorded_recipe)
    assert r.returncode == 0, r.stderr
    assert "Stage 6: distill stage 2 (\"+\") from stage1" in r.stderr
    assert [line.split()[1] for line in lines] == ["usad2.bin.distill", "usad2.bin.distill", "usad2.bin.export",
                                                   "usad2.bin.export", "usad2.bin.probe"]
    s1, s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"]
    assert "--omega" not in s1 and "--teacher_weights" not in s1
    assert _val(s1, "--teachers") == "speech_embedding,yamnet,basic_pitch"
    # both trainings as two one-thread processes (the demo recipe's --nproc 2; its configs: threads 1)
    launches = (recorded_recipe[2].parent / "launches.txt").read_text().splitlines()
    assert launches == ["torchrun --standalone --nproc-per-node 2 usad2.bin.distill"] * 2
    assert _val(s2, "--init") == "exp/usad2_mini6_offline_distill_default" and _val(s2, "--out_dir") == "exp/usad2_mini6_offline_distill_default_plus_default"
    # the demo recipe keeps the stage-1 teachers in stage 2 (its stand-in stage-2 teachers are weak)
    assert _val(s2, "--teachers") == _val(s1, "--teachers") and _val(s2, "--drop_stage1") == "false"
    e1, e2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.export"]
    assert _val(e1, "--out") == "exp/usad2_mini6_offline_distill_default/export/model.pt"
    assert _val(e2, "--checkpoint") == "exp/usad2_mini6_offline_distill_default_plus_default/checkpoints/last.pt"
    assert _val(e2, "--out") == "exp/usad2_mini6_offline_distill_default_plus_default/export/model.pt"
    probe = verbs["probe"]
    assert "student=exp/usad2_mini6_offline_distill_default_plus_default/export/model.pt" in probe
    assert "student_stage1=exp/usad2_mini6_offline_distill_default/export/model.pt" in probe
    assert _val(probe, "--out_dir") == "exp/usad2_mini6_offline_distill_default_plus_default/probe"
    # every teacher once (yamnet is a stage-1 and a stage-2 teacher), then all of them at once
    assert probe.count("yamnet") == 1 and probe.count("resemblyzer") == 1
    assert "teachers_concat=concat:speech_embedding,yamnet,basic_pitch,resemblyzer" in probe


def test_recipe_probe_teachers(recorded_recipe):
    """--probe_teachers are fetched (stage 0), probed and part of the topline (stage 8), but get no
    targets (stage 4) and no loss; a card that is also a --plus_teachers one is distilled as well."""
    r, verbs, lines = _recipe(recorded_recipe, "--stage", "0", "--stop_stage", "8", "--plus_teachers", "yamnet",
                              "--probe_teachers", "resemblyzer,mfcc_x")
    assert r.returncode == 0, r.stderr
    assert _val(verbs["teachers"], "--teachers") == "speech_embedding,yamnet,basic_pitch,resemblyzer,mfcc_x"
    extracted = [_val(line.split(), "--teacher") for line in lines
                 if line.split()[1] == "usad2.bin.extract_teacher" and "--job" not in line.split()]
    assert extracted == ["speech_embedding"] * 2 + ["yamnet"] * 2 + ["basic_pitch"] * 2
    s1, s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"]
    assert _val(s2, "--stage2_teachers") == "yamnet"
    assert not any(name in " ".join(s1 + s2) for name in ("resemblyzer", "mfcc_x"))
    probe = verbs["probe"]
    assert probe.count("resemblyzer") == 1 and probe.count("mfcc_x") == 1
    assert "teachers_concat=concat:speech_embedding,yamnet,basic_pitch,resemblyzer,mfcc_x" in probe
    # without stage 2 the probe-only teacher stays in the topline; its stage-2 teachers do not
    r, verbs, _ = _recipe(recorded_recipe, "--run_plus", "false", "--probe_teachers", "resemblyzer")
    assert "teachers_concat=concat:speech_embedding,yamnet,basic_pitch,resemblyzer" in verbs["probe"]
    # a card both distilled (the demo's stage 2) and named as probe-only: extracted, distilled, probed once
    r, verbs, lines = _recipe(recorded_recipe, "--stage", "4", "--stop_stage", "8", "--probe_teachers", "resemblyzer")
    assert r.returncode == 0, r.stderr
    extracted = [_val(line.split(), "--teacher") for line in lines
                 if line.split()[1] == "usad2.bin.extract_teacher" and "--job" not in line.split()]
    assert extracted.count("resemblyzer") == 2 and verbs["probe"].count("resemblyzer") == 1


def test_recipe_plus_keep_stage1(recorded_recipe):
    """--plus_keep_stage1 true: stage 6 keeps the stage-1 teachers (their heads come from --init)."""
    r, verbs, lines = _recipe(recorded_recipe, "--plus_keep_stage1", "true")
    assert r.returncode == 0, r.stderr
    s1, s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"]
    assert _val(s2, "--teachers") == _val(s1, "--teachers") and _val(s2, "--drop_stage1") == "false"
    assert _val(s2, "--stage2_teachers") == "resemblyzer,yamnet"
    r, verbs, lines = _recipe(recorded_recipe, "--plus_keep_stage1", "false")  # the paper's stage 2
    s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"][1]
    assert "--drop_stage1" not in s2 and "--teachers" not in s2
    r, _, lines = _recipe(recorded_recipe, "--plus_keep_stage1", "yes")
    assert r.returncode != 0 and "option 'plus_keep_stage1' takes true or false, got 'yes'" in r.stderr and not lines


def test_recipe_plus_interpolate(recorded_recipe):
    """--plus_interpolate W: stage 7 exports the stage-2 model moved W of the way to the stage-1 model;
    the stage-1 export and 0 (the paper's) export the models as trained."""
    stage1_ckpt = "exp/usad2_mini6_offline_distill_default/checkpoints/last.pt"
    r, _, lines = _recipe(recorded_recipe, "--plus_interpolate", "0.3")
    assert r.returncode == 0, r.stderr
    e1, e2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.export"]
    assert "--interpolate_with" not in e1
    assert _val(e2, "--interpolate_with") == stage1_ckpt and _val(e2, "--interpolate_weight") == "0.3"
    assert "the stage-2 model interpolated with the stage-1 model at weight 0.3" in r.stderr
    r, _, lines = _recipe(recorded_recipe, "--plus_interpolate", "0")
    assert r.returncode == 0 and not any("--interpolate_with" in line for line in lines)
    r, _, lines = _recipe(recorded_recipe, "--plus_interpolate", "0.5", "--stage2_init", "scratch")
    assert r.returncode != 0 and "--plus_interpolate needs --stage2_init stage1" in r.stderr
    assert not any("usad2.bin.export" in line for line in lines)


def test_recipe_plus_upscale_ranges(recorded_recipe):
    """--plus_upscale_ranges: stage 6 up-scales the stage-1 model (the paper's order) into its own dir;
    the probe's random init is the deeper architecture; a random-init stage 2 or interpolation is refused."""
    r, verbs, lines = _recipe(recorded_recipe, "--plus_upscale_ranges", "1-4,3-6")
    assert r.returncode == 0, r.stderr
    s1, s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"]
    assert "--upscale_ranges" not in s1
    assert _val(s2, "--init") == "exp/usad2_mini6_offline_distill_default"
    assert _val(s2, "--upscale_ranges") == "1-4,3-6"
    plus = "exp/usad2_mini6_offline_distill_default_plus_default_upscaled"
    assert _val(s2, "--out_dir") == plus
    assert f"random_init={plus}/export/model.pt" in verbs["probe"]
    r, verbs, lines = _recipe(recorded_recipe)
    assert "random_init=mini6" in verbs["probe"]
    for extra, message in ((["--stage2_init", "scratch"], "--plus_upscale_ranges needs --stage2_init stage1"),
                           (["--plus_interpolate", "0.5"], "--plus_interpolate needs two models of one depth")):
        r, _, lines = _recipe(recorded_recipe, "--plus_upscale_ranges", "1-4,3-6", *extra)
        assert r.returncode != 0 and message in r.stderr and not lines


def test_recipe_stage1_only(recorded_recipe):
    """--run_plus false: stage 1 is the final model; its dir holds export and probe."""
    r, verbs, lines = _recipe(recorded_recipe, "--run_plus", "false")
    assert r.returncode == 0, r.stderr
    assert "Stage 6: distill stage 2: skipped (--run_plus false)" in r.stderr
    assert [line.split()[1] for line in lines] == ["usad2.bin.distill", "usad2.bin.export", "usad2.bin.probe"]
    assert _val(verbs["export"], "--out") == "exp/usad2_mini6_offline_distill_default/export/model.pt"
    assert "student=exp/usad2_mini6_offline_distill_default/export/model.pt" in verbs["probe"]
    assert not any(w.startswith("student_stage1=") for w in verbs["probe"])
    assert "teachers_concat=concat:speech_embedding,yamnet,basic_pitch" in verbs["probe"]


def test_recipe_ablation_options(recorded_recipe):
    r, verbs, lines = _recipe(recorded_recipe, "--omega", "1", "--drop_teachers", "basic_pitch", "--run_plus", "true",
                              "--stage2_init", "scratch", "--s3prl_probe", "true", "--s3prl_steps", "7",
                              "--teacher_weights", "speech_embedding=2,resemblyzer=0.5")
    assert r.returncode == 0, r.stderr
    s1, s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"]
    assert _val(s1, "--teachers") == "speech_embedding,yamnet" and _val(s1, "--omega") == "1"
    assert _val(s2, "--omega") == "1" and _val(s2, "--student") == "mini6" and "--init" not in s2
    # one value for both stages: distill ignores (with a warning) a card that is not in the stage
    assert _val(s1, "--teacher_weights") == _val(s2, "--teacher_weights") == "speech_embedding=2,resemblyzer=0.5"
    assert _val(s2, "--stage2_teachers") == "resemblyzer,yamnet"
    assert "Stage 6: distill stage 2 (\"+\") from scratch" in r.stderr
    assert "basic_pitch" not in " ".join(verbs["probe"])
    s3 = verbs["s3prl_probe"]
    assert _val(s3, "--label") == "instrument_family" and _val(s3, "--steps") == "7"
    assert _val(s3, "--export").endswith("exp/usad2_mini6_offline_distill_default_plus_default/export/model.pt")
    # stage 6 from the stage-1 model by default
    r, verbs, lines = _recipe(recorded_recipe, "--run_plus", "true")
    s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"][1]
    assert _val(s2, "--init") == "exp/usad2_mini6_offline_distill_default" and "s3prl_probe" not in verbs


def test_recipe_stage9_fidelity_of_each_checkpoint_then_the_report(recorded_recipe):
    """Stage 9 measures the heads of the stage-1 and stage-2 checkpoints, and the report shows both."""
    r, verbs, lines = _recipe(recorded_recipe, "--stage", "9", "--stop_stage", "9")
    assert r.returncode == 0, r.stderr
    assert [line.split()[1] for line in lines] == ["usad2.bin.fidelity", "usad2.bin.fidelity", "usad2.bin.report"]
    f1, f2 = [line.split() for line in lines[:2]]
    for words, exp in ((f1, "exp/usad2_mini6_offline_distill_default"), (f2, "exp/usad2_mini6_offline_distill_default_plus_default")):
        assert _val(words, "--checkpoint") == f"{exp}/checkpoints/last.pt"
        assert _val(words, "--out") == f"{exp}/fidelity"
        assert _val(words, "--dev_dir") == "dump/raw/dev" and _val(words, "--targets_dir") == "dump/targets"
    report = verbs["report"]
    assert _val(report, "--out_dir") == "exp/usad2_mini6_offline_distill_default_plus_default/report"
    assert [report[i + 1] for i, w in enumerate(report) if w == "--fidelity"] == \
        ["exp/usad2_mini6_offline_distill_default/fidelity", "exp/usad2_mini6_offline_distill_default_plus_default/fidelity"]
    # stage 1 only, online teachers: one checkpoint, no offline targets
    r, verbs, lines = _recipe(recorded_recipe, "--stage", "9", "--stop_stage", "9", "--run_plus", "false",
                              "--teacher_mode", "online")
    assert r.returncode == 0, r.stderr
    assert [line.split()[1] for line in lines] == ["usad2.bin.fidelity", "usad2.bin.report"]
    assert "--targets_dir" not in verbs["fidelity"]
    assert _val(verbs["report"], "--fidelity") == "exp/usad2_mini6_online_distill_default/fidelity"


@pytest.mark.parametrize("args, message", [
    (("--drop_teachers", "muq"), "--drop_teachers: muq is not one of --teachers"),
    (("--drop_teachers", "speech_embedding,yamnet,basic_pitch"), "leaves no teacher"),
    (("--stage2_init", "random"), "--stage2_init: stage1 or scratch, got 'random'"),
])
def test_recipe_rejects_bad_ablation_options(recorded_recipe, args, message):
    r, _, lines = _recipe(recorded_recipe, *args)
    assert r.returncode != 0 and message in r.stderr and not lines




def _dirs(verbs_and_lines):
    """(stage-1 dir, stage-2 dir) that the two distill calls write."""
    _, _, lines = verbs_and_lines
    s1, s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"]
    return _val(s1, "--out_dir"), _val(s2, "--out_dir")


def test_recipe_tag_names_the_configs_so_sizes_never_share_a_dir(recorded_recipe):
    """The README's quick start (tiny) then ./run.sh (default) must not meet in one experiment dir,
    in either stage; run.sh names the configs and the template derives the tags from them."""
    tiny = _recipe(recorded_recipe, "--demo_size", "tiny")
    default = _recipe(recorded_recipe)
    assert tiny[0].returncode == 0 and default[0].returncode == 0, tiny[0].stderr + default[0].stderr
    assert _dirs(tiny) == ("exp/usad2_mini6_offline_distill_tiny", "exp/usad2_mini6_offline_distill_tiny_plus_tiny")
    assert _dirs(default) == ("exp/usad2_mini6_offline_distill_default",
                              "exp/usad2_mini6_offline_distill_default_plus_default")
    for (_, verbs, lines), size in ((tiny, "tiny"), (default, "default")):
        s1, s2 = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"]
        assert _val(s1, "--config") == f"conf/distill_{size}.yaml" and _val(s2, "--config") == f"conf/plus_{size}.yaml"
    # other configs (the paper's loss and heads) or another stage-2 config: their own dirs
    paper = _recipe(recorded_recipe, "--distill_config", "conf/distill_default_paper.yaml",
                    "--plus_config", "conf/plus_default_paper.yaml")
    assert _dirs(paper) == ("exp/usad2_mini6_offline_distill_default_paper",
                            "exp/usad2_mini6_offline_distill_default_paper_plus_default_paper")
    other_plus = _recipe(recorded_recipe, "--plus_config", "conf/plus_tiny.yaml")
    assert _dirs(other_plus) == ("exp/usad2_mini6_offline_distill_default",
                                 "exp/usad2_mini6_offline_distill_default_plus_tiny")
    # an explicit --tag names stage 1's dir; stage 2's still names its config
    assert _dirs(_recipe(recorded_recipe, "--tag", "mine")) == ("exp/mine", "exp/mine_plus_default")
    # no config at all (the large demo size has none yet): the verbs' defaults, a plain tag
    large = _recipe(recorded_recipe, "--demo_size", "large")
    assert _dirs(large) == ("exp/usad2_mini6_offline", "exp/usad2_mini6_offline_plus")
    assert "--config" not in large[1]["distill"]


def test_demo_size_reaches_local_data_through_local_data_opts(recorded_recipe):
    """The template knows no corpus: run.sh puts --demo_size first in local/data.sh's options."""
    r, verbs, _ = _recipe(recorded_recipe, "--stage", "1", "--stop_stage", "1", "--demo_size", "tiny",
                          "--local_data_opts", "--seed 3 --nj 1")
    assert r.returncode == 0, r.stderr
    assert "Stage 1: data: local/data.sh --demo_size tiny --seed 3 --nj 1 -> data/" in r.stderr
    demo = verbs["prepare_demo"]
    assert _val(demo, "--size") == "tiny" and _val(demo, "--seed") == "3" and _val(demo, "--nj") == "1"
    r, verbs, _ = _recipe(recorded_recipe, "--stage=1", "--stop-stage", "1", "--demo-size=large")
    assert r.returncode == 0, r.stderr
    assert _val(verbs["prepare_demo"], "--size") == "large" and _val(verbs["prepare_demo"], "--seed") == "0"


def test_one_k_for_targets_and_both_trainings(recorded_recipe):
    """--num_distill_layers reaches stage 4 (the layers extracted) and stages 5-6 (the layers
    distilled), so they cannot disagree; stage 4 extracts every teacher once."""
    r, verbs, lines = _recipe(recorded_recipe, "--stage", "4", "--stop_stage", "6", "--num_distill_layers", "3")
    assert r.returncode == 0, r.stderr
    extract = [line.split() for line in lines if line.split()[1] == "usad2.bin.extract_teacher"]
    # launcher jobs (--job 1, --job 2) then the merge, per teacher and set; yamnet (both stages) once
    teachers = [_val(words, "--teacher") for words in extract if "--job" not in words]
    assert teachers == ["speech_embedding"] * 2 + ["yamnet"] * 2 + ["basic_pitch"] * 2 + ["resemblyzer"] * 2
    assert len(extract) == 3 * len(teachers) and all(_val(words, "--k") == "3" for words in extract)
    distill = [line.split() for line in lines if line.split()[1] == "usad2.bin.distill"]
    assert len(distill) == 2 and all(_val(words, "--k") == "3" for words in distill)
    assert "--teacher_cards" not in " ".join(lines)  # no local checkpoints: the default card search
    # teachers given by path: every verb that reads cards gets stage 0's folder under one name
    recipe = recorded_recipe[0]
    (recipe / "dump" / "teacher_cards").mkdir(parents=True)
    r, verbs, lines = _recipe(recorded_recipe, "--stage", "4", "--stop_stage", "6", "--run_plus", "true",
                              "--teacher_checkpoints", "yamnet=/models/yamnet")
    assert r.returncode == 0, r.stderr
    card_users = [line.split() for line in lines if line.split()[1] in ("usad2.bin.extract_teacher", "usad2.bin.distill")]
    assert len(card_users) == 26 and all(_val(w, "--teacher_cards") == "dump/teacher_cards" for w in card_users)
    r, _, lines = _recipe(recorded_recipe, "--num_distill_layers", "0")
    assert r.returncode == 1 and "--num_distill_layers: a positive integer, got '0'" in r.stderr and not lines


@pytest.mark.parametrize("args, message", [
    (("--skip_stage2", "true"), "unknown option 'skip_stage2'"),  # gone: --run_plus false says it
    (("--distill_config", "conf/nope.yaml"), "--distill_config: conf/nope.yaml not found"),
    (("--plus_config", "conf/nope.yaml"), "--plus_config: conf/nope.yaml not found"),
    (("--demo_size", "huge"), "--demo_size: tiny, default or large, got 'huge'"),
])
def test_recipe_rejects_removed_and_bad_options(recorded_recipe, args, message):
    r, _, lines = _recipe(recorded_recipe, *args)
    assert r.returncode == 1 and message in r.stderr and not lines


def test_template_has_no_corpus_options(recorded_recipe):
    """usad2.sh itself refuses --demo_size: corpus options belong to local/data.sh."""
    recipe, fake, calls = recorded_recipe
    r = subprocess.run(["./usad2.sh", "--python", str(fake), "--demo_size", "tiny"], cwd=recipe,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "unknown option 'demo_size'" in r.stderr and not calls.exists()
