"""Security properties (issue 8 §4): no unsafe deserialisation anywhere in the tracked code,
Kaldi pipe commands refused unless enabled, and strict checkpoint loading.

The source scan parses every tracked .py file with `ast` (a text grep would miss a
`torch.load(` split over lines and would flag docstrings that merely mention it) and reports:
- `torch.load(...)` without the keyword `weights_only=True` (a literal True: a variable could be
  False at run time);
- `yaml.load`, `yaml.unsafe_load`, `yaml.full_load`, `pickle.load(s)`, `dill`/`cloudpickle`/
  `joblib` loads and `numpy.load(..., allow_pickle=True)`.
Files in ALLOW_LIST may hold such a call for a stated reason (none today).
"""
import ast
import os
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from usad2.audio.io import load_audio
from usad2.data.datadir import DataDir, load_data_dir
from usad2.errors import AudioError, CheckpointError, DataDirError, Usad2Error
from usad2.models.checkpoint import model_from_checkpoint
from usad2.models.export import load_export, make_export
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model

# path -> reason; keep it empty unless a call is unavoidable and its input is trusted
ALLOW_LIST = {}

UNSAFE_ATTRS = {
    ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "load_all"),
    ("yaml", "unsafe_load_all"), ("yaml", "full_load_all"),
    ("pickle", "load"), ("pickle", "loads"), ("cPickle", "load"), ("cPickle", "loads"),
    ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"),
    ("joblib", "load"), ("pd", "read_pickle"), ("pandas", "read_pickle"),
}


def _dotted(node):
    """'a.b.c' for an attribute chain of names, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _keyword_is_true(call, name):
    for kw in call.keywords:
        if kw.arg == name:
            return isinstance(kw.value, ast.Constant) and kw.value.value is True
    return False


def unsafe_calls(source, filename="<string>"):
    """[(line, description)] of unsafe deserialisation calls in Python `source`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        parts = tuple(name.split(".")[-2:])
        if parts == ("torch", "load") and not _keyword_is_true(node, "weights_only"):
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif parts in UNSAFE_ATTRS:
            found.append((node.lineno, f"{name}(...)"))
        elif parts in {("np", "load"), ("numpy", "load")} and _keyword_is_true(node, "allow_pickle"):
            found.append((node.lineno, f"{name}(..., allow_pickle=True)"))
    return found


def tracked_python_files(repo):
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=repo, check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return [p for p in out.splitlines() if os.path.isfile(os.path.join(repo, p))]


# ------------------------------------------------------------------------------ source scan


def test_scanner_flags_each_unsafe_form_and_accepts_safe_ones():
    bad = (
        "import torch, yaml, pickle, numpy as np\n"
        "torch.load('a')\n"
        "torch.load('a',\n    map_location='cpu')\n"
        "torch.load('a', weights_only=False)\n"
        "flag = True\ntorch.load('a', weights_only=flag)\n"
        "yaml.load(open('c'), Loader=yaml.Loader)\n"
        "yaml.unsafe_load('x')\n"
        "pickle.loads(b'')\n"
        "np.load('x.npy', allow_pickle=True)\n"
    )
    lines = [line for line, _ in unsafe_calls(bad)]
    assert lines == [2, 3, 5, 7, 8, 9, 10, 11]
    good = (
        "import torch, yaml, numpy as np\n"
        "torch.load('a', map_location='cpu', weights_only=True)\n"
        "yaml.safe_load('x: 1')\n"
        "np.load('x.npy', allow_pickle=False)\n"
        "'''torch.load(path) in a docstring is not a call'''\n"
    )
    assert unsafe_calls(good) == []


def test_no_unsafe_deserialisation_in_tracked_python(repo_dir):
    files = tracked_python_files(repo_dir)
    assert len(files) > 20, "git ls-files found too few Python files: wrong directory?"
    offenders = []
    for path in files:
        if path in ALLOW_LIST:
            continue
        with open(os.path.join(repo_dir, path), encoding="utf-8") as f:
            source = f.read()
        offenders += [f"{path}:{line}: {what}" for line, what in unsafe_calls(source, path)]
    assert not offenders, "unsafe deserialisation:\n" + "\n".join(offenders)


def test_allow_list_entries_exist_and_give_reasons(repo_dir):
    for path, reason in ALLOW_LIST.items():
        assert os.path.isfile(os.path.join(repo_dir, path)), path
        assert len(reason) > 10, f"{path}: give a reason"


# -------------------------------------------------------------------------------- Kaldi pipes


def _pipe_that_touches(marker):
    """A wav.scp pipe that would create `marker` and emit 0.2 s of audio if it ever ran."""
    return f"touch {marker} && sox -n -r 16000 -b 16 -t wav - synth 0.2 sine 440 |"


def test_data_dir_refuses_pipes_unless_enabled(tmp_path):
    marker = tmp_path / "ran"
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text(f"utt1 {_pipe_that_touches(marker)}\n")
    with pytest.raises(DataDirError) as err:
        load_data_dir(str(d))
    msg = str(err.value)
    assert "wav.scp:1" in msg and "pipe" in msg
    assert not marker.exists()
    data = load_data_dir(str(d), allow_pipes=True)  # validation never runs the command
    assert data.source("utt1").is_pipe and not marker.exists()


def test_data_dir_write_refuses_pipes_unless_enabled(tmp_path):
    with pytest.raises(DataDirError, match="pipe"):
        DataDir({"utt1": "cat /dev/null |"}).write(tmp_path / "d")
    assert not (tmp_path / "d" / "wav.scp").exists()


def test_audio_loader_refuses_pipes_unless_enabled(tmp_path):
    marker = tmp_path / "ran"
    cmd = _pipe_that_touches(marker)
    with pytest.raises(AudioError) as err:
        load_audio(cmd, name="utt1")
    assert "utt1" in str(err.value) and "allow_pipes" in str(err.value)
    assert not marker.exists()
    wave = load_audio(cmd, name="utt1", allow_pipes=True)
    assert marker.exists() and wave.shape == (3200,)


def test_plain_path_ending_in_bar_like_text_is_not_run(tmp_path):
    """A file *name* with shell metacharacters is only ever opened, never executed."""
    marker = tmp_path / "ran"
    path = tmp_path / f"x; touch {marker.name}.wav"
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000)
    wave = load_audio(str(path), name="u")
    assert wave.shape == (1600,) and not marker.exists()


# ------------------------------------------------------------------------- strict checkpoints


class Payload:
    """A class instance inside a checkpoint: loading it would need unrestricted unpickling."""


@pytest.fixture(scope="module")
def tiny_export():
    torch.manual_seed(0)
    return make_export(Usad2Model(get_preset("tiny")))


def test_export_with_an_extra_weight_is_rejected(tiny_export, tmp_path):
    obj = dict(tiny_export, state_dict=dict(tiny_export["state_dict"]))
    obj["state_dict"]["encoder.backdoor.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as err:
        load_export(path)
    assert str(path) in str(err.value) and "unexpected weights: encoder.backdoor.weight" in str(err.value)


def test_export_with_a_pickled_object_is_rejected(tiny_export, tmp_path):
    obj = dict(tiny_export, extra={"payload": Payload()})  # an arbitrary class: needs full unpickling
    path = tmp_path / "pickled.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_export(path)


def test_export_with_an_unknown_fbank_key_is_rejected(tiny_export, tmp_path):
    obj = dict(tiny_export, fbank_config=dict(tiny_export["fbank_config"], dither=1.0))
    path = tmp_path / "fbank.pt"
    torch.save(obj, path)
    with pytest.raises(Usad2Error) as err:  # ConfigError from the fbank config reader
        load_export(path)
    assert "dither" in str(err.value) and "unknown keys" in str(err.value)


def test_training_checkpoint_with_foreign_encoder_weight_is_rejected(tiny_export):
    model = {k: v for k, v in tiny_export["state_dict"].items()}
    model["encoder.layers.99.weight"] = torch.zeros(1)
    ckpt = {"model_config": tiny_export["model_config"], "model": model}
    with pytest.raises(CheckpointError, match="unexpected weights: encoder.layers.99.weight"):
        model_from_checkpoint(ckpt, "ckpt.pt")
