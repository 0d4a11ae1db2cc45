"""Precision resolution: fp32 / bf16 / auto from the CPU's flags, and the autocast it gives."""
import pytest
import torch

from usad2.errors import ConfigError
from usad2.models.wave_encoder import Usad2Model
from usad2.models.presets import get_preset
from usad2.utils import precision as P


def _cpuinfo(tmp_path, name, flags):
    path = tmp_path / name
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    return str(path)


def test_cpu_flags_decide_bf16(tmp_path):
    assert P.cpu_has_bf16(_cpuinfo(tmp_path, "avx512", "fpu sse avx512f avx512_bf16"))
    assert P.cpu_has_bf16(_cpuinfo(tmp_path, "amx", "fpu sse avx2 amx_bf16 amx_tile"))
    assert not P.cpu_has_bf16(_cpuinfo(tmp_path, "none", "fpu sse avx2 avx512f"))
    assert not P.cpu_has_bf16(str(tmp_path / "missing"))


def test_resolve_precision():
    assert P.resolve_precision("fp32") == "fp32"
    assert P.resolve_precision("bf16") == "bf16"
    assert P.resolve_precision("auto", "cpu") == ("bf16" if P.cpu_has_bf16() else "fp32")
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, auto, got 'fp16'"):
        P.resolve_precision("fp16")
    with pytest.raises(ConfigError, match="resolved precision"):
        P.autocast("auto")


def test_bf16_autocast_keeps_the_fbank_fp32_and_runs_the_encoder_in_bf16():
    torch.manual_seed(0)
    model = Usad2Model(get_preset("tiny")).eval()
    wav = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        feats_fp32, _ = model.features(wav)
        with P.autocast("bf16"):
            feats_bf16, _ = model.features(wav)
            out = model(wav)
        ref = model(wav)
    assert feats_bf16.dtype == torch.float32 and torch.equal(feats_fp32, feats_bf16)
    assert out.hidden_states[-1].dtype == torch.bfloat16
    assert ref.hidden_states[-1].dtype == torch.float32
    # bf16 keeps ~3 significant digits: the features agree to a few percent, not exactly
    a, b = out.hidden_states[-1].float(), ref.hidden_states[-1]
    rel = (a - b).norm() / b.norm()
    assert 0 < rel < 0.05
