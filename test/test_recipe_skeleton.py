"""Recipe skeleton: egs/TEMPLATE/usad2.sh, egs/TEMPLATE/setup.sh and egs/multidomain/run.sh.

The recipes run in a temporary copy of the repository's shell parts (utils/, egs/TEMPLATE,
egs/multidomain, with their symlinks), whose tools/ and usad2/ link to the real ones, so that
the default interpreter lookup (relative to the template) and path.sh are exercised as they are.
"""
import importlib.util
import os
import subprocess

import pytest
from conftest import copy_recipe_tree


@pytest.fixture
def repo_copy(tmp_path, repo_dir):
    copy_recipe_tree(tmp_path / "repo", repo_dir)
    return tmp_path / "repo"


def run(cmd, cwd, timeout=120):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def has_verb(verb):
    return importlib.util.find_spec(f"usad2.bin.{verb}") is not None


def test_recipe_links_are_relative(repo_dir):
    recipe = repo_dir / "egs" / "multidomain"
    assert os.readlink(recipe / "utils") == "../../utils"
    assert os.readlink(recipe / "usad2.sh") == "../TEMPLATE/usad2.sh"
    assert os.readlink(recipe / "path.sh") == "../TEMPLATE/path.sh"
    assert (recipe / "utils" / "parse_options.sh").is_file()


def test_no_absolute_machine_paths_in_shell_files(repo_dir):
    files = [repo_dir / "egs/TEMPLATE" / f for f in ("usad2.sh", "setup.sh", "path.sh", "cmd.sh", "slurm.conf")]
    files += [repo_dir / "egs/multidomain" / f for f in ("run.sh", "cmd.sh", "local/data.sh", "conf/slurm.conf")]
    for path in files:
        text = path.read_text()
        for bad in ("/work/", "/home/", "/root", "/tmp/", "/opt/"):
            assert bad not in text, f"{path} contains {bad}"


def test_usad2_help_lists_stages_and_recipe_defaults(repo_copy):
    r = run(["./run.sh", "--help"], repo_copy / "egs/multidomain")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  --")}
    for option in ("--stage", "--stop_stage", "--nj", "--python", "--demo_size", "--teacher_mode",
                   "--tag", "--force"):
        assert option in lines, option
    assert '"0"' in lines["--stage"] and "# first stage to run" in lines["--stage"]
    # run.sh's recipe defaults show as the current values.
    assert '"speech_embedding,yamnet,basic_pitch"' in lines["--teachers"]
    assert f'"{repo_copy}/tools/venv/bin/python"' in lines["--python"]
    assert "5 distill" in r.stdout
    assert "10 llm_eval" in r.stdout and '"false"' in lines["--run_llm_eval"] and '"smollm2-135m"' in lines["--llm"]


def test_stage_10_llm_eval_is_off_by_default(repo_copy):
    r = run(["./run.sh", "--stage", "10", "--stop_stage", "10"], repo_copy / "egs/multidomain")
    assert r.returncode == 0, r.stderr
    assert "Stage 10: llm_eval: skipped (off by default; --run_llm_eval true runs it)" in r.stderr
    bad = run(["./run.sh", "--stage", "10", "--stop_stage", "10", "--run_llm_eval", "maybe"],
              repo_copy / "egs/multidomain")
    assert bad.returncode != 0 and "run_llm_eval" in bad.stderr


@pytest.mark.recipe
def test_recipe_stage_1_runs_in_a_copy(repo_copy):
    recipe = repo_copy / "egs/multidomain"
    r = run(["./run.sh", "--stage", "1", "--stop_stage", "1", "--demo_size", "tiny"], recipe,
            timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Stage 1: data: local/data.sh --demo_size tiny -> data/" in r.stderr
    assert f"from {repo_copy}/usad2" in r.stderr  # interpreter and usad2 path are logged
    assert "Stage 2" not in r.stderr and "Stage 0" not in r.stderr
    if has_verb("prepare_demo"):  # local/data.sh generates the tiny demo corpus
        assert (recipe / "data" / "train" / "wav.scp").is_file()


@pytest.mark.parametrize("args, message", [
    (["--stagee", "1"], "unknown option 'stagee'"),
    (["--demo_size", "huge", "--stop_stage", "-1"], "--demo_size: tiny, default or large, got 'huge'"),
    (["--teacher_mode", "both", "--stop_stage", "-1"], "--teacher_mode: offline or online"),
    (["--precision", "fp16", "--stop_stage", "-1"], "--precision: fp32, bf16 or auto, got 'fp16'"),
    (["--force", "yes"], "option 'force' takes true or false"),
    (["--python", "/nonexistent/python", "--stop_stage", "-1"], "--python: '/nonexistent/python' not found"),
])
def test_recipe_rejects_bad_options(repo_copy, args, message):
    r = run(["./run.sh", *args], repo_copy / "egs/multidomain")
    assert r.returncode == 1
    assert message in r.stderr


def test_setup_creates_a_working_recipe_and_refuses_existing(repo_copy):
    r = run(["egs/TEMPLATE/setup.sh", "egs/newcorpus"], repo_copy)
    assert r.returncode == 0, r.stderr
    new = repo_copy / "egs/newcorpus"
    assert os.readlink(new / "utils") == "../../utils"
    assert os.readlink(new / "usad2.sh") == "../TEMPLATE/usad2.sh"
    assert os.readlink(new / "path.sh") == "../TEMPLATE/path.sh"
    assert (new / "cmd.sh").read_text() == (repo_copy / "egs/TEMPLATE/cmd.sh").read_text()
    assert (new / "conf/slurm.conf").is_file()
    assert os.access(new / "run.sh", os.X_OK) and os.access(new / "local/data.sh", os.X_OK)
    assert "wav.scp" in (new / "local/data.sh").read_text()

    h = run(["./run.sh", "--help"], new)
    assert h.returncode == 0, h.stderr
    assert "--stop_stage" in h.stdout

    # Stage 1 fails until local/data.sh is written, and says which file to write.
    s = run(["./run.sh", "--stage", "1", "--stop_stage", "1"], new)
    assert s.returncode != 0 and "local/data.sh: not written yet" in s.stderr

    (new / "run.sh").write_text("# edited\n")
    again = run(["egs/TEMPLATE/setup.sh", "egs/newcorpus"], repo_copy)
    assert again.returncode == 1 and "already exists; refusing to overwrite" in again.stderr
    assert (new / "run.sh").read_text() == "# edited\n"
    assert sorted(p.name for p in (repo_copy / "egs").iterdir()) == ["TEMPLATE", "multidomain", "newcorpus"]


def test_setup_refuses_a_recipe_outside_egs(repo_copy, tmp_path):
    r = run([str(repo_copy / "egs/TEMPLATE/setup.sh"), str(tmp_path / "elsewhere")], tmp_path)
    assert r.returncode == 1 and "recipes live in" in r.stderr
    assert not (tmp_path / "elsewhere").exists()
