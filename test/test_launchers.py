"""Job launchers utils/launch_local.sh and utils/launch_slurm.sh, run in real bash.

Slurm is not installed on the test machines: the generated sbatch script is checked as text, its
body is executed with SLURM_ARRAY_TASK_ID set (what a Slurm node does), and the submit/report
path runs against a stand-in `sbatch` that executes the array tasks one after another.
"""
import os
import re
import subprocess

import pytest

# A job that prints its number and fails when the file fail.<N> exists in the working directory.
JOB = 'echo "job $1 says hello"; if [ -e "fail.$1" ]; then echo "boom $1" >&2; exit 3; fi'


def launch(repo_dir, cwd, launcher, *args, env=None):
    return subprocess.run(["bash", str(repo_dir / "utils" / launcher), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def epochs(log_text):
    """(start, end) epoch seconds recorded by run_job.sh in a log."""
    start = float(re.search(r"^# started: .*\(epoch ([0-9.]+)\)$", log_text, re.M).group(1))
    end = float(re.search(r"^# ended: .*\(epoch ([0-9.]+)\), exit code", log_text, re.M).group(1))
    return start, end


def test_local_runs_jobs_with_job_substituted(repo_dir, tmp_path):
    r = launch(repo_dir, tmp_path, "launch_local.sh", "JOB=1:3", "log/t.JOB.log",
               "bash", "-c", JOB, "_", "JOB")
    assert r.returncode == 0, r.stderr
    for n in (1, 2, 3):
        text = (tmp_path / f"log/t.{n}.log").read_text()
        assert text.startswith("# command: bash -c ")
        assert text.splitlines()[0].endswith(f" _ {n}")
        assert f"# cwd: {tmp_path}" in text
        assert f"job {n} says hello" in text
        assert re.search(r"^# ended: .*, exit code 0, elapsed [0-9.]+ s$", text, re.M)
    assert not (tmp_path / "log/t.JOB.log").exists()


def test_local_single_job_without_job_variable(repo_dir, tmp_path):
    r = launch(repo_dir, tmp_path, "launch_local.sh", "log/one.log", "echo", "JOB", "stays")
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "log/one.log").read_text()
    assert "\nJOB stays\n" in text and "exit code 0" in text


def test_local_failure_reports_tail_and_rerun_command(repo_dir, tmp_path):
    (tmp_path / "fail.2").touch()
    r = launch(repo_dir, tmp_path, "launch_local.sh", "--mem", "2G", "JOB=1:3", "log/t.JOB.log",
               "bash", "-c", JOB, "_", "JOB")
    assert r.returncode == 1
    assert "job 2 failed with exit code 3; last lines of log/t.2.log:" in r.stderr
    assert "    boom 2" in r.stderr and "    job 2 says hello" in r.stderr
    assert "job 1 failed" not in r.stderr and "job 3 failed" not in r.stderr
    assert "1 of 3 jobs failed" in r.stderr
    rerun = [line.strip() for line in r.stderr.splitlines() if "JOB=2:2" in line]
    assert len(rerun) == 1
    assert rerun[0].startswith(f"cd {tmp_path} && ") and "launch_local.sh --mem 2G JOB=2:2" in rerun[0]

    # The printed command reruns only job 2 (which now succeeds) and leaves jobs 1 and 3 alone.
    (tmp_path / "fail.2").unlink()
    before = {n: (tmp_path / f"log/t.{n}.log").read_text() for n in (1, 3)}
    os.utime(tmp_path / "log/t.1.log", (1, 1))
    again = subprocess.run(["bash", "-c", rerun[0]], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "exit code 0" in (tmp_path / "log/t.2.log").read_text()
    assert "\nboom 2\n" not in (tmp_path / "log/t.2.log").read_text()
    assert {n: (tmp_path / f"log/t.{n}.log").read_text() for n in (1, 3)} == before
    assert os.stat(tmp_path / "log/t.1.log").st_mtime == 1


def test_local_command_not_found_is_a_failure(repo_dir, tmp_path):
    r = launch(repo_dir, tmp_path, "launch_local.sh", "JOB=1:2", "log/x.JOB.log",
               "no-such-command-usad2", "JOB")
    assert r.returncode == 1
    assert "job 1 failed with exit code 127" in r.stderr
    assert "no-such-command-usad2" in (tmp_path / "log/x.1.log").read_text()


def test_local_max_jobs_run_one_serialises(repo_dir, tmp_path):
    r = launch(repo_dir, tmp_path, "launch_local.sh", "--max-jobs-run", "1", "JOB=1:3",
               "log/s.JOB.log", "sleep", "0.3")
    assert r.returncode == 0, r.stderr
    spans = [epochs((tmp_path / f"log/s.{n}.log").read_text()) for n in (1, 2, 3)]
    for (_, end_prev), (start_next, _) in zip(spans, spans[1:]):
        assert start_next >= end_prev


def test_local_jobs_overlap_without_limit(repo_dir, tmp_path):
    r = launch(repo_dir, tmp_path, "launch_local.sh", "--max-jobs-run", "3", "JOB=1:3",
               "log/p.JOB.log", "sleep", "2")
    assert r.returncode == 0, r.stderr
    spans = [epochs((tmp_path / f"log/p.{n}.log").read_text()) for n in (1, 2, 3)]
    assert max(s for s, _ in spans) < min(e for _, e in spans)


@pytest.mark.parametrize("args, message", [
    (["JOB=3:1", "log/x.JOB.log", "true"], "empty job range 'JOB=3:1'"),
    (["--max-jobs-run", "0", "JOB=1:2", "log/x.JOB.log", "true"], "--max-jobs-run needs a positive integer"),
    (["JOB=1:2", "log/x.JOB.log"], "usage: launch_local.sh"),
    (["--mem"], "option '--mem' needs a value"),
])
def test_local_usage_errors(repo_dir, tmp_path, args, message):
    r = launch(repo_dir, tmp_path, "launch_local.sh", *args)
    assert r.returncode == 1 and message in r.stderr


SLURM_CONF = """# test configuration
command sbatch --export=ALL --partition=cpu
option mem=* --mem=$0
default mem=4G
option gpu=0
option gpu=* --gres=gpu:$0
default gpu=0
option num_threads=* --cpus-per-task=$0
"""


def slurm_script(tmp_path, name="ex"):
    return (tmp_path / f"exp/log/q/{name}.sh").read_text()


def test_slurm_dry_run_writes_the_sbatch_script(repo_dir, tmp_path):
    (tmp_path / "slurm.conf").write_text(SLURM_CONF)
    r = launch(repo_dir, tmp_path, "launch_slurm.sh", "--dry-run", "true", "--config", "slurm.conf",
               "--max-jobs-run", "2", "--num-threads", "4", "--gpu", "1", "JOB=1:5",
               "exp/log/ex.JOB.log", "python3", "-c", "print(1)", "--shard", "JOB",
               "out dir/part.JOB")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "exp/log/q/ex.sh"
    text = slurm_script(tmp_path)
    sbatch = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert sbatch[:3] == ["#SBATCH --job-name=ex", "#SBATCH --array=1-5%2",
                          "#SBATCH --output=exp/log/q/ex.%a.out"]
    # Given options mapped by `option NAME=*`, the default memory filled in.
    assert sorted(sbatch[3:]) == ["#SBATCH --cpus-per-task=4", "#SBATCH --gres=gpu:1",
                                  "#SBATCH --mem=4G"]
    assert f"cd {tmp_path} || exit 1" in text
    body = text.strip().splitlines()[-1]
    assert body.startswith("exec ") and str(repo_dir / "utils/run_job.sh") in body
    assert ('exp/log/ex."${SLURM_ARRAY_TASK_ID}".log python3 -c print\\(1\\) --shard '
            '"${SLURM_ARRAY_TASK_ID}" out\\ dir/part."${SLURM_ARRAY_TASK_ID}"') in body
    assert "JOB" not in body


def test_slurm_exact_value_wins_and_no_limit_without_max(repo_dir, tmp_path):
    (tmp_path / "slurm.conf").write_text(SLURM_CONF)
    r = launch(repo_dir, tmp_path, "launch_slurm.sh", "--config", "slurm.conf", "--gpu", "0",
               "--mem", "16G", "JOB=2:3", "exp/log/ex.JOB.log", "true",
               env={"USAD2_SLURM_DRY_RUN": "1"})
    assert r.returncode == 0, r.stderr
    text = slurm_script(tmp_path)
    assert "#SBATCH --array=2-3\n" in text
    assert "#SBATCH --mem=16G\n" in text and "--mem=4G" not in text and "gres" not in text


def test_slurm_unmapped_option_and_bad_conf_are_errors(repo_dir, tmp_path):
    (tmp_path / "slurm.conf").write_text(SLURM_CONF)
    r = launch(repo_dir, tmp_path, "launch_slurm.sh", "--dry-run", "true", "--config",
               "slurm.conf", "--colour", "red", "JOB=1:2", "exp/log/ex.JOB.log", "true")
    assert r.returncode == 1
    assert "slurm.conf: no 'option colour=...' line for --colour" in r.stderr
    (tmp_path / "bad.conf").write_text("command sbatch\nrun rm -rf x\n")
    r = launch(repo_dir, tmp_path, "launch_slurm.sh", "--dry-run", "true", "--config", "bad.conf",
               "JOB=1:2", "exp/log/ex.JOB.log", "true")
    assert r.returncode == 1 and "bad.conf line 2: unknown directive 'run'" in r.stderr


def test_slurm_script_body_runs_the_task_it_is_given(repo_dir, tmp_path):
    r = launch(repo_dir, tmp_path, "launch_slurm.sh", "--dry-run", "true", "JOB=1:4",
               "exp/log/ex.JOB.log", "bash", "-c", JOB, "_", "JOB")
    assert r.returncode == 0, r.stderr
    task = subprocess.run(["bash", "exp/log/q/ex.sh"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, env={**os.environ, "SLURM_ARRAY_TASK_ID": "3"})
    assert task.returncode == 0, task.stderr
    text = (tmp_path / "exp/log/ex.3.log").read_text()
    assert "job 3 says hello" in text and "exit code 0" in text
    assert not (tmp_path / "exp/log/ex.1.log").exists()


# Stand-in for sbatch: records its arguments, runs every array task of the script in turn.
FAKE_SBATCH = """#!/usr/bin/env bash
echo "$@" >> "${FAKE_SBATCH_CALLS}"
script="${@: -1}"
range=$(sed -n 's/^#SBATCH --array=\\([0-9]*-[0-9]*\\).*/\\1/p' "${script}")
rc=0
for ((i = ${range%-*}; i <= ${range#*-}; i++)); do
    SLURM_ARRAY_TASK_ID=$i bash "${script}" || rc=1
done
exit $rc
"""


@pytest.fixture
def fake_sbatch(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    calls = tmp_path / "sbatch.calls"
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_SBATCH_CALLS": str(calls)}, calls


def test_slurm_submits_with_wait_and_reports_failures(repo_dir, tmp_path, fake_sbatch):
    env, calls = fake_sbatch
    (tmp_path / "fail.2").touch()
    args = ["--mem", "1G", "JOB=1:3", "exp/log/ex.JOB.log", "bash", "-c", JOB, "_", "JOB"]
    r = launch(repo_dir, tmp_path, "launch_slurm.sh", *args, env=env)
    assert r.returncode == 1
    assert calls.read_text().split() == ["--export=ALL", "--wait", "exp/log/q/ex.sh"]
    assert "job 2 failed with exit code 3; last lines of exp/log/ex.2.log:" in r.stderr
    assert "    boom 2" in r.stderr and "1 of 3 jobs failed" in r.stderr
    rerun = [line.strip() for line in r.stderr.splitlines() if "JOB=2:2" in line]
    assert len(rerun) == 1 and "launch_slurm.sh --mem 1G JOB=2:2 exp/log/ex.JOB.log" in rerun[0]

    (tmp_path / "fail.2").unlink()
    again = subprocess.run(["bash", "-c", rerun[0]], capture_output=True, text=True, timeout=60,
                           env={**os.environ, **env})
    assert again.returncode == 0, again.stderr
    assert "#SBATCH --array=2-2\n" in (tmp_path / "exp/log/q/ex.sh").read_text()
    assert "exit code 0" in (tmp_path / "exp/log/ex.2.log").read_text()


def test_slurm_missing_log_counts_as_failure(repo_dir, tmp_path, fake_sbatch):
    env, _ = fake_sbatch
    # The task is killed before run_job.sh writes its end line: no exit code in the log.
    r = launch(repo_dir, tmp_path, "launch_slurm.sh", "JOB=1:1", "exp/log/k.JOB.log",
               "bash", "-c", "kill -9 $PPID", env=env)
    assert r.returncode == 1
    assert "job 1 did not finish (no exit code in exp/log/k.1.log; killed?)" in r.stderr


@pytest.mark.parametrize("launcher", ["launch_local.sh", "launch_slurm.sh"])
def test_help_documents_the_interface(repo_dir, tmp_path, launcher):
    r = launch(repo_dir, tmp_path, launcher, "--help")
    assert r.returncode == 0
    assert f"utils/{launcher} [--max-jobs-run N]" in r.stdout
    assert "JOB=1:N LOGDIR/name.JOB.log" in r.stdout
    assert not r.stdout.startswith("#!")
