"""Depth up-scaling (issue 3 item 4): weight provenance, the result loads and runs, CLI."""
import pytest
import torch

import usad2
from usad2.bin.upscale_depth import main, upscale_depth
from usad2.errors import ConfigError
from usad2.models.export import save_export
from usad2.models.heads import build_heads
from usad2.models.presets import get_preset
from usad2.models.upscale import default_ranges, layer_map, parse_ranges, upscale
from usad2.models.wave_encoder import Usad2Model


def test_ranges():
    assert default_ranges(32) == [(1, 24), (9, 32)]
    assert len(layer_map(default_ranges(32), 32)) == 48
    assert layer_map(default_ranges(32), 32)[23:26] == [24, 9, 10]
    assert parse_ranges("1-24, 9-32,5") == [(1, 24), (9, 32), (5, 5)]
    with pytest.raises(ConfigError, match="bad layer range '3-1'"):
        parse_ranges("3-1")
    with pytest.raises(ConfigError, match="bad layer range 'x'"):
        parse_ranges("1-2,x")
    with pytest.raises(ConfigError, match="exceeds the source model's 4 layers"):
        layer_map([(1, 5)], 4)


def _assert_provenance(src_model, new_model, sources):
    """Every new block equals its source block, weight by weight; the rest is copied unchanged."""
    assert new_model.config.num_layers == len(sources)
    for i, src in enumerate(sources):
        new_sd = new_model.encoder.layers[i].state_dict()
        src_sd = src_model.encoder.layers[src - 1].state_dict()
        assert new_sd.keys() == src_sd.keys()
        for name in new_sd:
            assert torch.equal(new_sd[name], src_sd[name]), (i, src, name)
            # and it is not equal to any other source layer (random init makes them distinct)
            for other in range(src_model.config.num_layers):
                if other != src - 1:
                    assert not torch.equal(new_sd[name], src_model.encoder.layers[other].state_dict()[name]) \
                        or name.endswith("bias") and torch.count_nonzero(new_sd[name]) == 0
    for prefix in ("encoder.subsampler.", "encoder.pos_conv.", "encoder.final_norm."):
        for k, v in src_model.state_dict().items():
            if k.startswith(prefix):
                assert torch.equal(new_model.state_dict()[k], v)


@pytest.fixture
def src_model():
    torch.manual_seed(0)
    model = Usad2Model(get_preset("tiny", num_layers=4, time_stride=4, freq_stride=4)).eval()
    with torch.no_grad():  # make every parameter distinct across layers (biases start at zero)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def test_upscale_export_default_ranges(tmp_path, src_model):
    save_export(src_model, tmp_path / "src.pt")
    sources = upscale_depth(tmp_path / "src.pt", tmp_path / "up.pt")
    assert sources == [1, 2, 3, 2, 3, 4]
    new = usad2.load(tmp_path / "up.pt")
    _assert_provenance(src_model, new, sources)
    raw = torch.load(tmp_path / "up.pt", weights_only=True)
    assert raw["extra"]["layer_map"] == sources and raw["model_config"]["num_layers"] == 6
    out = new(torch.randn(2, 8000) * 0.1, torch.tensor([8000, 5000]))
    assert len(out.hidden_states) == 7 and out.hidden_states[-1].shape == (2, 12, 64)  # 48 fbank frames / 4
    assert torch.isfinite(out.hidden_states[-1]).all()
    # the stamp makes a rerun skip; other ranges redo it
    assert upscale_depth(tmp_path / "src.pt", tmp_path / "up.pt") is None


def test_upscale_cli_ranges(tmp_path, src_model):
    save_export(src_model, tmp_path / "src.pt")
    assert main(["--src", str(tmp_path / "src.pt"), "--out", str(tmp_path / "u.pt"), "--ranges", "4,1-2,4"]) == 0
    _assert_provenance(src_model, usad2.load(tmp_path / "u.pt"), [4, 1, 2, 4])


def test_upscale_training_checkpoint_keeps_heads(tmp_path, src_model):
    heads = build_heads({("muq", 3): 16}, in_dim=64)
    model_sd = {f"module.encoder.{k}": v for k, v in src_model.encoder.state_dict().items()}
    model_sd.update({f"module.heads.{k}": v for k, v in heads.state_dict().items()})
    torch.save({"model_config": src_model.config.to_dict(), "model": model_sd, "optimizer": {"x": 1}},
               tmp_path / "ckpt.pt")
    assert upscale_depth(tmp_path / "ckpt.pt", tmp_path / "up.pt", "1-4,3-4") == [1, 2, 3, 4, 3, 4]
    raw = torch.load(tmp_path / "up.pt", weights_only=True)
    assert "optimizer" not in raw and raw["model_config"]["num_layers"] == 6
    assert torch.equal(raw["model"]["module.encoder.layers.5.ffn.fc1.weight"],
                       src_model.encoder.layers[3].ffn.fc1.weight)
    assert torch.equal(raw["model"]["module.heads.muq:L3.2.weight"], heads["muq:L3"][2].weight)
    config, state, _ = upscale(raw["model_config"], raw["model"], "1-6")  # still well-formed
    assert config["num_layers"] == 6


def test_missing_source_layer_is_error(src_model):
    sd = {k: v for k, v in src_model.state_dict().items() if not k.startswith("encoder.layers.2.")}
    with pytest.raises(ConfigError, match="no layer 3"):
        upscale(src_model.config.to_dict(), sd, "1-4")
