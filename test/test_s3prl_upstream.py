"""The s3prl upstream `-u usad2`: expert contract, hub registration hook, runner round trip."""
import ast
import os
import subprocess
import sys

import pytest
import torch
import yaml

import usad2
from usad2.bin import s3prl_runner
from usad2.errors import CheckpointError, ConfigError
from usad2.models.export import save_export
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model
from usad2.s3prl_upstream import hook
from usad2.s3prl_upstream.expert import UpstreamExpert

SR = 16000


def _export(directory, time_stride):
    torch.manual_seed(1234)
    model = Usad2Model(get_preset("tiny", time_stride=time_stride))
    return save_export(model, os.path.join(directory, f"tiny_{time_stride}.pt"))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Tiny random exports at 50 Hz (stride 2) and 25 Hz (stride 4)."""
    directory = str(tmp_path_factory.mktemp("exports"))
    return {2: _export(directory, 2), 4: _export(directory, 4)}


def _waves(seed=0, lengths=(SR, 23456, 7000)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * 0.1 for n in lengths]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


# ---- expert contract -------------------------------------------------------------------------

@pytest.mark.parametrize("stride,rate", [(2, 320), (4, 640)])
def test_expert_shapes_and_rate(exports, stride, rate):
    expert = UpstreamExpert(ckpt=exports[stride])
    assert not expert.training and not expert.model.training
    assert expert.get_downsample_rates("hidden_states") == rate
    wavs = _waves()
    with torch.no_grad():
        out = expert(wavs)
    states = out["hidden_states"]
    num_layers = expert.model.config.num_layers
    assert len(states) == num_layers + 1
    expected_t = 1 + ((1 + (max(map(len, wavs)) - 400) // 160) - 1) // stride
    for h in states:
        assert h.shape == (3, expected_t, expert.model.config.d_model)
    # s3prl's Featurizer tolerates < 5 frames between T and round(N / rate)
    assert abs(expected_t - round(max(map(len, wavs)) / rate)) < 5
    assert out["last_hidden_state"] is states[-1]


def test_expert_equals_model_and_is_deterministic(exports):
    expert = UpstreamExpert(ckpt=exports[2])
    wavs = _waves(seed=3)
    with torch.no_grad():
        a = expert(wavs)["hidden_states"]
        b = expert(wavs)["hidden_states"]
        padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
        ref = usad2.load(exports[2])(padded, torch.tensor([len(w) for w in wavs])).hidden_states
    for x, y, r in zip(a, b, ref):
        assert torch.equal(x, y)
        assert torch.equal(x, r)
    # frontend output (index 0) differs from the last layer: the list really is per layer
    assert not torch.allclose(a[0], a[-1])


def test_expert_batch_does_not_change_an_utterance(exports):
    """The expert passes true lengths: a short wave batched with a long one keeps its features."""
    expert = UpstreamExpert(ckpt=exports[2])
    short, long = _waves(seed=5, lengths=(9000, 30000))
    with torch.no_grad():
        alone = expert([short])["hidden_states"]
        batched = expert([short, long])["hidden_states"]
    t = alone[0].shape[1]
    for x, y in zip(alone, batched):
        torch.testing.assert_close(y[0, :t], x[0], atol=1e-4, rtol=1e-4)


def test_expert_pads_waves_shorter_than_one_window(exports):
    expert = UpstreamExpert(ckpt=exports[4])
    with torch.no_grad():
        out = expert([torch.randn(100)])
    assert [h.shape[1] for h in out["hidden_states"]] == [1] * (expert.model.config.num_layers + 1)


def test_model_config_selects_layers(exports, tmp_path):
    cfg = tmp_path / "layers.yaml"
    cfg.write_text("layers: [0, -1]\n")
    full = UpstreamExpert(ckpt=exports[2])
    some = UpstreamExpert(ckpt=exports[2], model_config=str(cfg))
    wavs = _waves(seed=7)
    with torch.no_grad():
        all_states = full(wavs)["hidden_states"]
        chosen = some(wavs)["hidden_states"]
    assert len(chosen) == 2
    assert torch.equal(chosen[0], all_states[0]) and torch.equal(chosen[1], all_states[-1])


def test_model_config_asks_for_bf16(exports, tmp_path):
    cfg = tmp_path / "bf16.yaml"
    cfg.write_text("precision: bf16\n")
    full = UpstreamExpert(ckpt=exports[2])
    fast = UpstreamExpert(ckpt=exports[2], model_config=str(cfg))
    assert full.precision == "fp32" and fast.precision == "bf16"  # fp32 unless asked
    wavs = _waves(seed=7)
    with torch.no_grad():
        ref, got = full(wavs)["hidden_states"][-1], fast(wavs)["hidden_states"][-1]
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert 0 < ((got - ref).norm() / ref.norm()).item() < 0.05


@pytest.mark.parametrize("text,fragment", [
    ("precision: fp16\n", "precision must be one of fp32, bf16, auto"),
    ("layrs: [1]\n", "unknown keys ['layrs']"),
    ("layers: [9]\n", "layer 9 is not in [-5, 5)"),
    ("layers: []\n", "non-empty list"),
    ("- 1\n", "expected a mapping"),
])
def test_model_config_errors_name_the_file(exports, tmp_path, text, fragment):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        UpstreamExpert(ckpt=exports[2], model_config=str(cfg))
    assert str(cfg) in str(e.value) and fragment in str(e.value)


def test_ckpt_errors(exports, tmp_path):
    with pytest.raises(CheckpointError, match="needs a local export"):
        UpstreamExpert(ckpt=None)
    with pytest.raises(CheckpointError, match="exactly one"):
        UpstreamExpert(ckpt=os.path.dirname(exports[2]))  # holds the 50 and 25 Hz exports
    single = tmp_path / "export"
    single.mkdir()
    os.link(exports[4], single / "model.pt")
    assert UpstreamExpert(ckpt=str(single)).get_downsample_rates("x") == 640


# ---- hub entries and the registration hook ---------------------------------------------------

def test_hub_entries_accept_s3prl_arguments(exports):
    from usad2.s3prl_upstream import hubconf

    for entry in (hubconf.usad2, hubconf.usad2_local):
        expert = entry(ckpt=exports[4], model_config=None, refresh=True)
        assert expert.get_downsample_rates("hidden_states") == 640


def test_pth_file_activates_hook_lazily(tmp_path, repo_dir):
    """A site dir with only our .pth: start-up imports no torch/s3prl; s3prl.hub gets usad2."""
    site_dir = tmp_path / "site"
    path = hook.install_pth(str(site_dir))
    assert open(path).read() == hook.PTH_LINE
    venv_site = hook.default_site_dir()
    code = (
        "import sys, site\n"
        f"sys.path[:0] = [{str(repo_dir)!r}]; sys.path.append({venv_site!r})\n"
        f"site.addsitedir({str(site_dir)!r})\n"
        "assert 'usad2.s3prl_upstream.hook' in sys.modules\n"
        "assert 'torch' not in sys.modules and 's3prl' not in sys.modules\n"
        "import s3prl.hub as h\n"
        "print(h.usad2.__module__, h.usad2_local.__module__)\n"
    )
    # -S: the environment's own .pth files (an installed hook included) are not processed
    res = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         env=_env(), cwd=str(tmp_path), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-2:] == ["usad2.s3prl_upstream.hubconf"] * 2


def test_hub_registered_in_fresh_process_after_install(tmp_path):
    """The installed environment (tools/setup.sh or pip install) registers -u usad2."""
    assert hook.installed_pth(), ("usad2_s3prl.pth is not installed: run tools/setup.sh or "
                                  "python -m usad2.bin.s3prl_runner --install-hook")
    res = subprocess.run([sys.executable, "-c", "import s3prl.hub as h; print(h.usad2.__module__)"],
                         capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == "usad2.s3prl_upstream.hubconf"


def test_setup_py_writes_the_same_pth_line(repo_dir):
    tree = ast.parse((repo_dir / "setup.py").read_text())
    consts = [ast.literal_eval(node.value) for node in tree.body
              if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "S3PRL_PTH"]
    assert consts == [(hook.PTH_NAME, hook.PTH_LINE)]


def test_s3prl_upstream_espnet_path(exports):
    """ESPnet's S3PRLUpstream("usad2") resolves through the same hub entry."""
    hook.install()
    from s3prl.nn import S3PRLUpstream

    upstream = S3PRLUpstream("usad2", path_or_url=exports[2]).eval()
    assert upstream.num_layers == 5 and upstream.downsample_rates == [320] * 5
    wavs = torch.randn(2, 24000) * 0.1
    lens = torch.tensor([16000, 24000])
    with torch.no_grad():
        hs, hs_len = upstream(wavs, lens)
    assert len(hs) == 5
    for h, n in zip(hs, hs_len):
        assert n.tolist() == [50, 75]
        assert h.shape == (2, 75, 64)


# ---- the runner wrapper ----------------------------------------------------------------------

def test_print_config_and_errors(capsys):
    assert s3prl_runner.main(["--print-config", "example"]) == 0
    path = capsys.readouterr().out.strip()
    config = yaml.safe_load(open(path))
    assert config["runner"]["total_steps"] <= 5 and "downstream_expert" in config
    assert "utterance_classification" in s3prl_runner.list_configs()
    with pytest.raises(ConfigError, match="available: example"):
        s3prl_runner.config_path("nope")
    with pytest.raises(ConfigError, match="nothing to do"):
        s3prl_runner.main([])


def test_install_hook_command(tmp_path):
    assert s3prl_runner.main(["--install-hook", "--site-dir", str(tmp_path)]) == 0
    assert (tmp_path / hook.PTH_NAME).read_text() == hook.PTH_LINE
    assert oct(os.stat(tmp_path / hook.PTH_NAME).st_mode & 0o777) == "0o644"


@pytest.mark.s3prl
def test_run_downstream_train_then_evaluate(exports, tmp_path):
    """The unmodified s3prl runner: -m train (2 steps) then -m evaluate -e, and the wrapper."""
    expdir = tmp_path / "exp"
    config = s3prl_runner.config_path("example")
    train = [sys.executable, "-m", "s3prl.run_downstream", "-m", "train", "-u", "usad2",
             "-k", exports[2], "-d", "example", "-c", config, "--device", "cpu", "-p", str(expdir)]
    res = subprocess.run(train, capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = expdir / "states-2.ckpt"
    assert ckpt.is_file()
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        states = torch.load(ckpt, weights_only=True)
    assert states["Step"] == 2 and states["Args"].upstream == "usad2"
    assert "Featurizer" in states and "Downstream" in states

    evaluate = [sys.executable, "-m", "s3prl.run_downstream", "-m", "evaluate", "-e", str(ckpt),
                "--device", "cpu"]
    res = subprocess.run(evaluate, capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Loading Downstream weights from the previous experiment" in res.stdout + res.stderr

    wrapped = [sys.executable, "-m", "usad2.bin.s3prl_runner", "--"] + evaluate[3:]
    res = subprocess.run(wrapped, capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Loading Downstream weights from the previous experiment" in res.stdout + res.stderr


# ---- Kaldi data dirs -> the emotion downstream (generic utterance classification) -----------

def _classification_dirs(root, counts=(("train", 6), ("test", 3))):
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    for split, n in counts:
        (root / split).mkdir(parents=True)
        scp, labels = [], []
        for i in range(n):
            utt = f"{split}_{i:02d}"
            path = root / "wav" / f"{utt}.wav"
            path.parent.mkdir(exist_ok=True)
            sf.write(str(path), (rng.standard_normal(8000 + 800 * i) * 0.1).astype("float32"), SR)
            scp.append(f"{utt} {path}")
            labels.append(f"{utt} {'cat' if i % 2 else 'dog'}")
        (root / split / "wav.scp").write_text("\n".join(scp) + "\n")
        (root / split / "utt2label").write_text("\n".join(labels) + "\n")
    return root / "train", root / "test"


def test_make_meta_writes_emotion_lists(tmp_path, capsys):
    import json

    train, test = _classification_dirs(tmp_path)
    out = tmp_path / "meta"
    assert s3prl_runner.main(["--make-meta", str(train), str(test), str(out)]) == 0
    override = capsys.readouterr().out.strip()
    assert override.endswith(f"meta_data={str(out)!r}")
    doc = json.loads((out / "Session1" / "test_meta_data.json").read_text())
    assert doc["labels"] == {"cat": 0, "dog": 1}
    assert doc["meta_data"][1] == {"path": str(tmp_path / "wav" / "test_01.wav"), "label": "cat"}
    assert len(json.loads((out / "Session1" / "train_meta_data.json").read_text())["meta_data"]) == 6


def test_make_meta_errors(tmp_path):
    from usad2.errors import DataDirError
    from usad2.s3prl_upstream.classification_meta import utterance_labels

    train, _ = _classification_dirs(tmp_path, counts=(("train", 2),))
    with pytest.raises(DataDirError, match="no utt2genre file"):
        utterance_labels(str(train), label="genre")
    (train / "utt2label").write_text("train_00 dog\ntrain_01 cat bird\n")
    with pytest.raises(DataDirError, match="utterance train_01 needs exactly one label"):
        utterance_labels(str(train))


@pytest.mark.slow
@pytest.mark.s3prl
def test_emotion_downstream_on_data_dirs(exports, tmp_path):
    """configs/utterance_classification.yaml + --make-meta train and write predictions."""
    train, test = _classification_dirs(tmp_path)
    meta = tmp_path / "meta"
    from usad2.s3prl_upstream.classification_meta import override_for, write_classification_meta

    write_classification_meta(str(train), str(test), str(meta))
    tiny = ("config.runner.total_steps=2,,config.runner.eval_step=2,,config.runner.save_step=2,,"
            "config.downstream_expert.datarc.num_workers=0")
    cmd = [sys.executable, "-m", "s3prl.run_downstream", "-m", "train", "-u", "usad2", "-k", exports[2],
           "-d", "emotion", "-c", s3prl_runner.config_path("utterance_classification"), "--device", "cpu",
           "-p", str(tmp_path / "exp"), "-o", override_for(str(meta)) + ",," + tiny]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=str(tmp_path), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "exp" / "states-2.ckpt").is_file()
    predicted = (tmp_path / "exp" / "test_fold1_predict.txt").read_text().split()
    assert len(predicted) == 6 and set(predicted[1::2]) <= {"cat", "dog"}
