"""Weight interpolation of two models (docs/method.md#41-weight-interpolation): the numbers, the refusals,
and the export verb that writes it (the recipe's stage 7)."""
import os

import pytest
import torch

from usad2.bin.export import main as export_main
from usad2.errors import ConfigError
from usad2.models.export import load_export, save_export
from usad2.models.interpolate import interpolate_models
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model


def _model(seed, preset="tiny"):
    torch.manual_seed(seed)
    return Usad2Model(get_preset(preset)).eval()


def test_every_weight_moves_by_the_given_fraction():
    torch.set_num_threads(1)
    a, b = _model(0), _model(1)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    interpolate_models(a, b, 0.3)
    theirs = b.state_dict()
    floats = [k for k, v in before.items() if torch.is_floating_point(v)]
    assert len(floats) > 20
    for key in floats:
        assert torch.allclose(a.state_dict()[key], 0.7 * before[key] + 0.3 * theirs[key], atol=1e-6), key
    moved = [k for k in floats if not torch.equal(before[k], theirs[k])]
    assert moved and all(not torch.equal(a.state_dict()[k], before[k]) for k in moved)
    # the ends of the line are the two models
    c = interpolate_models(_model(0), b, 1.0)
    assert all(torch.equal(c.state_dict()[k], theirs[k]) for k in floats)
    d = interpolate_models(_model(0), b, 0.0)
    assert all(torch.equal(d.state_dict()[k], before[k]) for k in floats)


def test_other_architectures_and_bad_weights_are_refused():
    a = _model(0)
    with pytest.raises(ConfigError,
                       match=r"cannot interpolate a.pt with b.pt: other architectures \(.*d_model 64 vs 192"):
        interpolate_models(a, _model(1, "mini"), 0.5, "a.pt", "b.pt")
    with pytest.raises(ConfigError, match=r"weight must lie in \[0, 1\].*got 1.5"):
        interpolate_models(a, _model(1), 1.5)


def test_export_verb_writes_the_interpolated_model_and_says_so(tmp_path):
    torch.set_num_threads(1)
    stage2, stage1 = str(tmp_path / "stage2.pt"), str(tmp_path / "stage1.pt")
    save_export(_model(0), stage2)
    save_export(_model(1), stage1)
    out = str(tmp_path / "export" / "model.pt")
    assert export_main(["--checkpoint", stage2, "--out", out, "--interpolate_with", stage1,
                        "--interpolate_weight", "0.25"]) == 0
    got = load_export(out).state_dict()
    a, b = load_export(stage2).state_dict(), load_export(stage1).state_dict()
    key = "encoder.layers.0.ffn.fc1.weight"
    assert torch.allclose(got[key], 0.75 * a[key] + 0.25 * b[key], atol=1e-6)
    extra = torch.load(out, weights_only=True)["extra"]
    assert extra["interpolated_with"] == stage1 and extra["interpolation_weight"] == 0.25
    # another weight is another export (the stamp holds it), the default weight is 0.5
    assert export_main(["--checkpoint", stage2, "--out", out, "--interpolate_with", stage1]) == 0
    assert torch.allclose(load_export(out).state_dict()[key], 0.5 * a[key] + 0.5 * b[key], atol=1e-6)
    with pytest.raises(ConfigError, match="--interpolate_weight needs --interpolate_with"):
        export_main(["--checkpoint", stage2, "--out", out, "--interpolate_weight", "0.5"])
    # the Hugging Face directory says so in its model card
    hf = str(tmp_path / "hf")
    assert export_main(["--checkpoint", stage2, "--out", hf, "--format", "hf", "--interpolate_with", stage1,
                        "--interpolate_weight", "0.25"]) == 0
    with open(os.path.join(hf, "README.md")) as f:
        assert f"Weights interpolated: 0.75 x the trained model + 0.25 x `{stage1}`." in f.read()
