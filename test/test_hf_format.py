"""Hugging Face model directories (issue 15 item 3): `export --format hf`, AutoModel without usad2,
and every usad2 reader (usad2.load, s3prl -k, the probe, HEAR, X-ARES) accepting the directory."""
import json
import os
import subprocess
import sys
import sysconfig

import pytest
import torch

import usad2
from usad2.bin.export import main as export_main
from usad2.errors import CheckpointError
from usad2.hf import is_hf_dir
from usad2.models.checkpoint import read_model_file
from usad2.models.export import load_export
from usad2.models.presets import count_parameters, get_preset
from usad2.models.wave_encoder import Usad2Model

TEACHERS = [{"name": "resemblyzer", "domain": "speech", "frame_rate": "100", "pairs": [[4, 3]]},
            {"name": "yamnet", "domain": "audio", "frame_rate": "25/2", "pairs": [[2, 5], [4, 7]]}]


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    """A tiny experiment dir: a training checkpoint (with heads), its .pt export, probe results, the hf export."""
    root = tmp_path_factory.mktemp("exp")
    torch.manual_seed(0)
    student = Usad2Model(get_preset("tiny"))
    state = {k: v.clone() for k, v in student.state_dict().items()}
    state["heads.yamnet.weight"] = torch.zeros(3, 3)  # a training-only module the export drops
    ckpt = {"format": "usad2-train-checkpoint", "step": 123, "hours": 4.5, "teachers": TEACHERS,
            "config": {"init": "exp/stage1/checkpoints/best.pt"},
            "model_config": student.config.to_dict(), "fbank_config": student.fbank_config.to_dict(),
            "model": state}
    os.makedirs(root / "checkpoints")
    torch.save(ckpt, root / "checkpoints" / "last.pt")
    os.makedirs(root / "probe")
    (root / "probe" / "results.json").write_text(json.dumps(
        {"student": {"word": 0.25, "pitch_class": 0.5, "_mean": 0.375, "_domain_mean": {"speech": 0.25}},
         "fbank": {"word": 0.125, "_mean": 0.125}}))
    assert export_main(["--checkpoint", str(root / "checkpoints" / "last.pt"),
                        "--out", str(root / "export" / "model.pt")]) == 0
    assert export_main(["--checkpoint", str(root / "checkpoints" / "last.pt"), "--format", "hf",
                        "--out", str(root / "export" / "hf")]) == 0
    return root


@pytest.fixture
def wavs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 16000, generator=g) * 0.1, torch.tensor([16000, 9000])


def test_directory_layout_and_config(exp):
    hf = exp / "export" / "hf"
    assert sorted(os.listdir(hf)) == ["README.md", "config.json", "configuration_usad2.py", "model.safetensors",
                                      "modeling_usad2.py", "usad2_encoder.py"]
    config = json.loads((hf / "config.json").read_text())
    assert config["model_type"] == "usad2" and config["architectures"] == ["Usad2Model"]
    assert config["auto_map"] == {"AutoConfig": "configuration_usad2.Usad2Config",
                                  "AutoModel": "modeling_usad2.Usad2Model"}
    assert config["encoder_config"] == get_preset("tiny").to_dict() and config["hidden_size"] == 64
    assert config["usad2_extra"]["training"]["step"] == 123
    # the encoder file is usad2's own, verbatim, and imports nothing of usad2
    encoder_src = (hf / "usad2_encoder.py").read_text()
    with open(os.path.join(os.path.dirname(usad2.__file__), "models", "encoder.py"), encoding="utf-8") as f:
        assert encoder_src == f.read()
    for name in ("usad2_encoder.py", "modeling_usad2.py", "configuration_usad2.py"):
        code = (hf / name).read_text()
        assert "import usad2" not in code and "from usad2" not in code, name
    assert is_hf_dir(hf) and not is_hf_dir(exp / "export") and not is_hf_dir(exp / "export" / "model.pt")


def test_usad2_load_and_export_equal(exp, wavs):
    pt, hf = usad2.load(exp / "export" / "model.pt"), usad2.load(exp / "export" / "hf")
    assert not hf.training and hf.config == pt.config and hf.fbank_config == pt.fbank_config
    for a, b in zip(pt(*wavs).hidden_states, hf(*wavs).hidden_states):
        assert torch.equal(a, b)
    # provenance survives: checkpoint -> .pt extra -> config.json -> read back
    assert read_model_file(exp / "export" / "hf").provenance == torch.load(
        exp / "export" / "model.pt", weights_only=True)["extra"]


def test_model_card(exp):
    card = (exp / "export" / "hf" / "README.md").read_text()
    assert "library_name: transformers" in card
    assert "| preset | tiny |" in card
    assert f"| parameters | {count_parameters(get_preset('tiny')):,} |" in card
    assert "| frame rate | 50 Hz (320 samples per frame) |" in card
    assert "| training steps | 123 |" in card and "| training audio | 4.50 hours seen |" in card
    assert "| initialised from | `exp/stage1/checkpoints/best.pt` |" in card
    assert "| resemblyzer | speech | 100 | (4, 3) |" in card
    assert "| yamnet | audio | 25/2 | (2, 5), (4, 7) |" in card
    # probe results found in <exp>/probe/results.json, the "student" entry only
    assert "| pitch_class | 0.500 |" in card and "| **mean** | **0.375** |" in card
    assert "| mean (speech) | 0.250 |" in card and "0.125" not in card


def test_card_without_provenance_or_probe(tmp_path):
    torch.manual_seed(0)
    from usad2.models.export import save_export

    save_export(Usad2Model(get_preset("tiny", time_stride=4, freq_stride=4)), tmp_path / "m.pt")
    assert export_main(["--checkpoint", str(tmp_path / "m.pt"), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "| preset | custom |" in card and "| frame rate | 25 Hz (640 samples per frame) |" in card
    assert "## Teachers" not in card and "## Probe results" not in card


def _run_without_usad2(code, cwd, *args):
    """Run `code` in a Python that sees the venv's site-packages but neither usad2 nor the repository.

    -S skips site processing, so neither usad2's editable-install finder nor its s3prl .pth runs;
    the site-packages directory is then appended by hand (torch, transformers, safetensors).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HOME=str(cwd / "hf_home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    prelude = (f"import sys; sys.path.append({sysconfig.get_paths()['purelib']!r})\n"
               "import importlib.util; assert importlib.util.find_spec('usad2') is None, 'usad2 is importable'\n")
    return subprocess.run([sys.executable, "-S", "-c", prelude + code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


AUTOMODEL_SCRIPT = """
import torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
data = torch.load(sys.argv[2], weights_only=True)
mask = (torch.arange(data["wavs"].shape[1])[None] < data["lengths"][:, None]).long()
with torch.no_grad():
    out = model(data["wavs"], attention_mask=mask, output_hidden_states=True)
    single = model(data["wavs"][1, :9000]).last_hidden_state
torch.save({"hidden": list(out.hidden_states), "last": out.last_hidden_state, "mask": out.attention_mask,
            "single": single, "cls": type(model).__name__, "training": model.training,
            "usad2_loaded": any(m == "usad2" or m.startswith("usad2.") for m in sys.modules)}, sys.argv[3])
"""


def test_automodel_loads_without_usad2(exp, wavs, tmp_path):
    torch.save({"wavs": wavs[0], "lengths": wavs[1]}, tmp_path / "in.pt")
    proc = _run_without_usad2(AUTOMODEL_SCRIPT, tmp_path, str(exp / "export" / "hf"), str(tmp_path / "in.pt"),
                              str(tmp_path / "out.pt"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert got["cls"] == "Usad2Model" and not got["training"] and not got["usad2_loaded"]
    with torch.no_grad():
        ref = usad2.load(exp / "export" / "model.pt")(*wavs)
    assert len(got["hidden"]) == len(ref.hidden_states) == 5
    diff = max((a - b).abs().max().item() for a, b in zip(got["hidden"], ref.hidden_states))
    assert diff <= 1e-5
    assert torch.equal(got["last"], got["hidden"][-1])
    assert got["mask"].tolist() == (~ref.padding_mask).long().tolist() and got["mask"].sum(1).tolist() == [49, 27]
    # padding never changes a wave's features: the padded row equals the wave alone
    assert (got["single"][0] - got["last"][1, :27]).abs().max().item() <= 1e-5


def test_hf_to_pt_round_trip_and_stamp(exp, tmp_path):
    hf = exp / "export" / "hf"
    assert export_main(["--checkpoint", str(hf), "--out", str(tmp_path / "back.pt")]) == 0
    back, pt = torch.load(tmp_path / "back.pt", weights_only=True), torch.load(exp / "export" / "model.pt",
                                                                              weights_only=True)
    assert back["extra"] == pt["extra"] and back["model_config"] == pt["model_config"]
    assert all(torch.equal(back["state_dict"][k], v) for k, v in pt["state_dict"].items())
    from usad2.bin.export import export_model

    assert export_model(str(hf), str(tmp_path / "hf2"), fmt="hf") is True
    assert export_model(str(hf), str(tmp_path / "hf2"), fmt="hf") is False  # stamp matches
    assert os.path.getsize(tmp_path / "hf2" / "model.safetensors") == os.path.getsize(hf / "model.safetensors")


def test_bad_directories_are_named(tmp_path, exp):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(CheckpointError, match="model_type 'wav2vec2', not a usad2 model directory"):
        load_export(bad)
    (bad / "config.json").write_text(json.dumps({"model_type": "usad2", "encoder_config": {}, "fbank_config": {}}))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_export(bad)
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_export(bad)
    with pytest.raises(CheckpointError, match="without config.json"):
        load_export(tmp_path)


def test_other_readers_accept_the_directory(exp, wavs):
    hf = str(exp / "export" / "hf")
    ref = usad2.load(exp / "export" / "model.pt")
    # probe: --model NAME=DIR
    from usad2.probe.features import model_from_spec

    probed = model_from_spec(f"student={hf}")
    assert probed.identity()["kind"] == "student" and len(probed.identity()["sha256"]) == 64
    assert torch.equal(probed.model.encoder.layers[0].attn.q_proj.weight, ref.encoder.layers[0].attn.q_proj.weight)
    # s3prl: -u usad2 -k DIR
    import s3prl.hub as hub

    expert = hub.usad2(hf)
    assert not expert.training
    with torch.no_grad():
        hs = expert([wavs[0][0]])["hidden_states"]
        assert torch.equal(hs[-1], ref(wavs[0][:1]).hidden_states[-1])
    # HEAR and X-ARES wrappers
    import usad2.hear as hear
    from usad2.xares import Usad2Encoder

    assert hear.load_model(hf).embedding_size == 64
    assert Usad2Encoder(model=hf).output_dim == 64


def test_init_upscale_and_model_info_accept_the_directory(exp, tmp_path, capsys):
    from usad2.bin.distill import resolve_init
    from usad2.bin.model_info import main as model_info_main
    from usad2.bin.upscale_depth import main as upscale_main
    from usad2.distill.build import read_init

    hf = str(exp / "export" / "hf")
    ref = load_export(exp / "export" / "model.pt")
    assert resolve_init(hf) == hf  # not mistaken for an experiment dir
    init = read_init(hf)
    assert init.model_config == ref.config.to_dict() and init.heads is None
    assert torch.equal(init.state_dict["encoder.layers.0.attn.q_proj.weight"], ref.encoder.layers[0].attn.q_proj.weight)
    out = tmp_path / "up.pt"
    assert upscale_main(["--src", hf, "--ranges", "1-4,3-4", "--out", str(out)]) == 0
    assert load_export(out).config.num_layers == 6
    assert model_info_main(["--export", hf]) == 0
    assert f"params: {count_parameters(ref.config)}" in capsys.readouterr().out
