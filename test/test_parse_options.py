"""utils/parse_options.sh: Kaldi option semantics, --config files and --help, run in real bash.

Each test writes a small script that sets defaults and sources the real parse_options.sh, runs it
in a subprocess and checks the variables it prints, its exit status and its error messages.
"""
import subprocess

import pytest

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
stage=0           # first stage to run
foo_bar=abc       # a string option
use_gpu=false     # a boolean option
tag=""            # may be empty
help_message="Usage: $0 [options] <arg>"
. utils/parse_options.sh
echo "stage=${stage}|foo_bar=${foo_bar}|use_gpu=${use_gpu}|tag=${tag}|args=$*"
"""


@pytest.fixture
def script(tmp_path, repo_dir):
    """A script using parse_options.sh, in a directory with a `utils` link to the repo's."""
    (tmp_path / "utils").symlink_to(repo_dir / "utils")
    path = tmp_path / "s.sh"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return path


def run(script, *args):
    return subprocess.run(["bash", str(script.name), *args], cwd=script.parent,
                          capture_output=True, text=True, timeout=30)


def values(result):
    """Parse the script's `name=value|...` line into a dict."""
    assert result.returncode == 0, result.stderr
    return dict(item.split("=", 1) for item in result.stdout.strip().split("|"))


def test_defaults_untouched_without_options(script):
    assert values(run(script)) == {"stage": "0", "foo_bar": "abc", "use_gpu": "false",
                                   "tag": "", "args": ""}


def test_dash_and_underscore_forms_set_the_variable(script):
    v = values(run(script, "--foo-bar", "x y", "--stage=3", "--use_gpu", "true", "--tag", "t1"))
    assert v["foo_bar"] == "x y" and v["stage"] == "3" and v["use_gpu"] == "true"
    assert v["tag"] == "t1"


def test_positional_arguments_remain(script):
    v = values(run(script, "--stage", "2", "pos1", "--not-an-option-any-more"))
    assert v["stage"] == "2"
    assert v["args"] == "pos1 --not-an-option-any-more"
    assert values(run(script, "--", "--stage"))["args"] == "--stage"


def test_unknown_option_is_an_error_naming_it(script):
    r = run(script, "--stage", "1", "--no-such-thing", "5")
    assert r.returncode == 1
    assert "unknown option 'no_such_thing'" in r.stderr
    assert r.stdout == ""


def test_environment_variables_are_not_options(script):
    r = run(script, "--PATH", "/nowhere")
    assert r.returncode == 1 and "unknown option 'PATH'" in r.stderr


def test_missing_value_is_an_error(script):
    r = run(script, "--tag", "x", "--stage")
    assert r.returncode == 1
    assert "'--stage' needs a value" in r.stderr


@pytest.mark.parametrize("bad", ["yes", "1", "True", ""])
def test_boolean_default_accepts_only_true_or_false(script, bad):
    r = run(script, "--use-gpu", bad)
    assert r.returncode == 1
    assert f"option 'use_gpu' takes true or false, got '{bad}'" in r.stderr


def test_config_file_sets_values_and_command_line_wins(script):
    conf = script.parent / "my.conf"
    conf.write_text("# a comment\n\nfoo_bar='quoted value'  # trailing comment\n"
                    'tag="t2"\nstage=7\nuse_gpu=true\n')
    v = values(run(script, "--stage", "9", "--config", "my.conf"))
    assert v == {"stage": "9", "foo_bar": "quoted value", "use_gpu": "true", "tag": "t2",
                 "args": ""}
    v = values(run(script, "--config", "my.conf", "--stage", "8"))
    assert v["stage"] == "8"


@pytest.mark.parametrize("line", ["rm -rf x", "stage=$(touch pwned)", "stage=`touch pwned`",
                                  "stage=1; touch pwned", "export stage=1", "stage = 1",
                                  'tag="a$HOME"'])
def test_config_rejects_anything_but_name_value(script, line):
    conf = script.parent / "bad.conf"
    conf.write_text(f"stage=1\n{line}\n")
    r = run(script, "--config", "bad.conf")
    assert r.returncode == 1
    assert "bad.conf line 2: expected NAME=VALUE" in r.stderr
    assert line in r.stderr
    assert not (script.parent / "pwned").exists()


def test_config_unknown_name_and_bad_boolean_name_the_line(script):
    conf = script.parent / "c.conf"
    conf.write_text("stage=1\n\nnope=2\n")
    r = run(script, "--config", "c.conf")
    assert r.returncode == 1 and "c.conf line 3: unknown option 'nope'" in r.stderr
    conf.write_text("use_gpu=maybe\n")
    r = run(script, "--config", "c.conf")
    assert r.returncode == 1
    assert "c.conf line 1: option 'use_gpu' takes true or false, got 'maybe'" in r.stderr


def test_config_missing_file(script):
    r = run(script, "--config", "absent.conf")
    assert r.returncode == 1 and "no such file 'absent.conf'" in r.stderr


def test_help_prints_text_and_every_option_with_current_value(script):
    r = run(script, "--stage", "4", "--help", "--tag", "later")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("Usage: s.sh [options] <arg>\n")
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  --")}
    assert set(lines) == {"--stage", "--foo_bar", "--use_gpu", "--tag", "--config", "--help"}
    assert '"4"' in lines["--stage"] and "# first stage to run" in lines["--stage"]
    assert '"abc"' in lines["--foo_bar"] and '"later"' in lines["--tag"]
    assert '"false"' in lines["--use_gpu"] and "# a boolean option" in lines["--use_gpu"]
    assert "stage=" not in out  # the script body did not run


def test_short_help_flag(script):
    r = run(script, "-h")
    assert r.returncode == 0 and "--foo_bar" in r.stdout


# Names parse_options.sh used for its own locals (and a few more a recipe may well use): an
# option of that name was silently left at its default because `printf -v` wrote the local.
SHADOW_NAMES = ["name", "value", "where", "file", "line", "lineno", "raw", "plain", "squoted", "dquoted", "re",
                "opt", "comment", "text", "i", "names", "values", "configs", "nshift", "script", "prog"]  # help, config: reserved


@pytest.fixture
def shadow_script(tmp_path, repo_dir):
    (tmp_path / "utils").symlink_to(repo_dir / "utils")
    lines = ["#!/usr/bin/env bash", "set -euo pipefail"]
    lines += [f"{n}=default_{n}  # option {n}" for n in SHADOW_NAMES]
    lines += ['help_message="Usage: $0"', ". utils/parse_options.sh"]
    lines += ['echo "' + "|".join(f"{n}=${{{n}}}" for n in SHADOW_NAMES) + '"']
    path = tmp_path / "shadow.sh"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("form", ["space", "equals", "dashes", "config"])
def test_every_internal_name_can_be_an_option(shadow_script, form, tmp_path):
    if form == "space":
        args = [a for n in SHADOW_NAMES for a in (f"--{n}", f"set_{n}")]
    elif form == "equals":
        args = [f"--{n}=set_{n}" for n in SHADOW_NAMES]
    elif form == "dashes":
        args = [a for n in SHADOW_NAMES for a in (f"--{n.replace('_', '-')}", f"set_{n}")]
    else:
        conf = tmp_path / "c.conf"
        conf.write_text("".join(f"{n}=set_{n}\n" for n in SHADOW_NAMES))
        args = ["--config", str(conf)]
    got = values(run(shadow_script, *args))
    assert got == {n: f"set_{n}" for n in SHADOW_NAMES}


def test_each_internal_name_alone_and_in_help(shadow_script):
    for n in SHADOW_NAMES:
        got = values(run(shadow_script, f"--{n}", "q"))
        assert got[n] == "q" and all(v == f"default_{k}" for k, v in got.items() if k != n), n
    result = run(shadow_script, "--name", "q", "--help")
    assert result.returncode == 0
    assert any(line.split()[:2] == ["--name", '"q"'] for line in result.stdout.splitlines()), result.stdout
