"""Export format (issue 3 item 3): round trip, strict loading errors, checkpoint -> export, CLI."""
import pytest
import torch

import usad2
from usad2.errors import CheckpointError
from usad2.models.export import (FORMAT_VERSION, export_from_checkpoint, load_export, make_export,
                                 save_export)
from usad2.models.heads import build_heads
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Usad2Model(get_preset("tiny")).eval()


@pytest.fixture
def wavs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 12000, generator=g) * 0.1, torch.tensor([12000, 7000])


def test_round_trip_bit_identical(tmp_path, model, wavs):
    path = save_export(model, tmp_path / "model.pt", extra={"step": 7})
    loaded = usad2.load(path)
    assert not loaded.training and loaded.config == model.config
    assert loaded.fbank_config == model.fbank_config
    a, b = model(*wavs), loaded(*wavs)
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert torch.equal(x, y)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "usad2-export" and raw["format_version"] == FORMAT_VERSION
    assert raw["usad2_version"] == usad2.__version__ and raw["extra"] == {"step": 7}
    assert all(k.startswith("encoder.") for k in raw["state_dict"])


def test_round_trip_25hz(tmp_path, wavs):
    torch.manual_seed(0)
    model = Usad2Model(get_preset("tiny", time_stride=4, freq_stride=4)).eval()
    loaded = load_export(save_export(model, tmp_path / "m25.pt"))
    assert loaded.frame_rate == 25.0 and loaded.downsample_rate == 640
    assert torch.equal(model(*wavs).hidden_states[-1], loaded(*wavs).hidden_states[-1])


def test_missing_and_unexpected_keys_are_named(tmp_path, model):
    obj = make_export(model)
    del obj["state_dict"]["encoder.layers.1.attn.pos_bias_u"]
    obj["state_dict"]["encoder.bogus.weight"] = torch.zeros(1)
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_export(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "bad.pt" in msg and "missing weights: encoder.layers.1.attn.pos_bias_u" in msg
    assert "unexpected weights: encoder.bogus.weight" in msg


def test_wrong_shape_is_named(tmp_path, model):
    obj = make_export(model)
    obj["model_config"]["d_model"] = 128
    torch.save(obj, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"wrong shape: .*\(64,\) != \(128,\)"):
        load_export(tmp_path / "shape.pt")


def test_newer_format_version(tmp_path, model):
    obj = make_export(model)
    obj["format_version"] = FORMAT_VERSION + 1
    torch.save(obj, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="format_version 2 is newer than this usad2"):
        load_export(tmp_path / "new.pt")


def test_foreign_files(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "raw.pt")
    with pytest.raises(CheckpointError, match="raw.pt: not a usad2 export"):
        load_export(tmp_path / "raw.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt: cannot be read as a weights-only torch file"):
        load_export(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="nothere.pt: no such file"):
        load_export(tmp_path / "nothere.pt")
    obj = make_export(model)
    del obj["fbank_config"]
    torch.save(obj, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks the keys fbank_config"):
        load_export(tmp_path / "partial.pt")


def test_pickled_objects_are_refused(tmp_path, model):
    torch.save({"format": "usad2-export", "obj": Usad2Model}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_export(tmp_path / "pickle.pt")


def test_export_from_training_checkpoint_drops_heads(tmp_path, model, wavs):
    heads = build_heads({("wavlm_base_plus", 4): 768}, in_dim=64)
    state = {f"module.encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    state.update({f"module.heads.{k}": v for k, v in heads.state_dict().items()})
    ckpt = {"model_config": model.config.to_dict(), "model": state, "step": 3, "optimizer": {}}
    export_from_checkpoint(ckpt, tmp_path / "exp.pt")
    raw = torch.load(tmp_path / "exp.pt", weights_only=True)
    assert not any("heads" in k for k in raw["state_dict"])
    assert torch.equal(usad2.load(tmp_path / "exp.pt")(*wavs).hidden_states[2], model(*wavs).hidden_states[2])
    # a bare encoder state dict works too
    bare = {"model_config": model.config.to_dict(), "model": model.encoder.state_dict()}
    assert torch.equal(export_from_checkpoint(bare, tmp_path / "b.pt").encoder.layers[0].ffn.fc1.weight,
                       model.encoder.layers[0].ffn.fc1.weight)
    with pytest.raises(CheckpointError, match="expected a checkpoint with 'model_config' and 'model'"):
        export_from_checkpoint({"model": {}}, tmp_path / "c.pt")


def test_export_cli(tmp_path, model, wavs):
    from usad2.bin.export import main

    torch.save({"model_config": model.config.to_dict(), "model": model.state_dict()}, tmp_path / "ckpt.pt")
    out = tmp_path / "export" / "model.pt"
    assert main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(out)]) == 0
    assert torch.equal(usad2.load(out)(*wavs).hidden_states[-1], model(*wavs).hidden_states[-1])
    mtime = out.stat().st_mtime_ns
    assert main(["--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(out)]) == 0  # stamped: skipped
    assert out.stat().st_mtime_ns == mtime
    # a raw state dict needs --preset
    torch.save(model.encoder.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="sd.pt: a bare state dict; give --preset"):
        main(["--checkpoint", str(tmp_path / "sd.pt"), "--out", str(tmp_path / "x.pt")])
    assert main(["--checkpoint", str(tmp_path / "sd.pt"), "--preset", "tiny", "--out", str(tmp_path / "y.pt")]) == 0
    assert torch.equal(usad2.load(tmp_path / "y.pt")(*wavs).hidden_states[-1], model(*wavs).hidden_states[-1])


def test_read_model_file_gives_one_view_of_every_kind(tmp_path, model, wavs):
    from usad2.models.checkpoint import read_model_file

    save_export(model, tmp_path / "e.pt", {"note": "x"})
    heads = build_heads({("muq", 2): 8}, in_dim=64)
    state = {f"module.encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    torch.save({"model_config": model.config.to_dict(), "model": state, "heads": heads.state_dict(), "step": 5,
                "teachers": [{"name": "muq", "domain": "music", "frame_rate": "25", "pairs": [[2, 2]]}]},
               tmp_path / "c.pt")
    torch.save(model.encoder.state_dict(), tmp_path / "s.pt")
    want = model(*wavs).hidden_states[-1]
    export, ckpt = read_model_file(tmp_path / "e.pt"), read_model_file(tmp_path / "c.pt")
    bare = read_model_file(tmp_path / "s.pt", preset="tiny")
    assert (export.kind, ckpt.kind, bare.kind) == ("export", "checkpoint", "state_dict")
    assert export.provenance == {"note": "x"} and export.heads is None
    assert ckpt.provenance["training"]["step"] == 5 and set(ckpt.heads) == set(heads.state_dict())
    for found in (export, ckpt, bare):
        assert all(k.startswith("encoder.") for k in found.state_dict)
        assert torch.equal(found.build()(*wavs).hidden_states[-1], want)
    with pytest.raises(CheckpointError, match="s.pt: a bare state dict; give --preset"):
        read_model_file(tmp_path / "s.pt").build()
    with pytest.raises(CheckpointError, match=r"e.pt: not a usad2 checkpoint \(found an export; why\)"):
        export.require("checkpoint", why="why")
    torch.save({"step": 3}, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="f.pt: neither a usad2 export, a checkpoint"):
        read_model_file(tmp_path / "f.pt")
