"""X-ARES and XARES-LLM encoders (issue 15 item 2), checked by xares' own checker.

xares is installed with `pip install --no-deps xares==0.1.3` plus loguru (all its checker
imports); XARES-LLM is not on the package registry, so its calling convention
(`encoder(audio, audio_attention_mask) -> (features, mask)`, HF masks, `output_dim`, kwargs from
`--model_args`) is exercised directly, the way its XaresLLMModel calls an encoder.
"""
import pytest
import torch

import usad2
import usad2.hear as hear
from usad2.errors import ConfigError
from usad2.models.export import save_export
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model


@pytest.fixture(params=[2, 4], ids=["50Hz", "25Hz"])
def export(request, tmp_path):
    torch.manual_seed(0)
    stride = request.param
    path = save_export(Usad2Model(get_preset("tiny", time_stride=stride, freq_stride=stride)), tmp_path / "m.pt")
    return str(path), stride


@pytest.fixture
def env(monkeypatch):
    for name in ("USAD2_MODEL", "USAD2_LAYER", "USAD2_CHUNK_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_xares_checker_accepts_the_encoder(export, env):
    checker = pytest.importorskip("xares.audio_encoder_checker", reason="pip install --no-deps xares loguru")
    from xares.utils import attr_from_py_path

    path, stride = export
    env.setenv("USAD2_MODEL", path)
    # exactly what `python -m xares.run usad2.xares ...` does: the one *Encoder class, no arguments
    cls = attr_from_py_path("usad2.xares", endswith="Encoder")
    encoder = cls()
    assert cls.__name__ == "Usad2Encoder" and not encoder.training
    assert checker.check_audio_encoder(encoder) is True
    assert encoder.output_dim == 64 and encoder.sampling_rate == 16000
    assert encoder.hop_size_in_ms == 10.0 * stride
    out = encoder(torch.randn(2, 50000) * 0.1)
    # X-ARES's own rule of thumb: hop ~ input duration / frames
    assert abs(50000 / 16 / out.shape[1] - encoder.hop_size_in_ms) < 0.02 * encoder.hop_size_in_ms
    # the layer average of usad2.hear, deterministic
    audio = torch.randn(2, 16000) * 0.1
    assert torch.equal(encoder(audio), hear.get_timestamp_embeddings(audio, hear.load_model(path))[0])
    assert torch.equal(encoder(audio), encoder(audio))


def test_layer_and_errors_from_environment(export, env):
    from usad2.xares import Usad2Encoder

    path, _ = export
    with pytest.raises(ConfigError, match="set USAD2_MODEL"):
        Usad2Encoder()
    env.setenv("USAD2_MODEL", path)
    env.setenv("USAD2_LAYER", "2")
    audio = torch.randn(1, 8000) * 0.1
    with torch.no_grad():
        ref = usad2.load(path)(audio).hidden_states[2]
    assert torch.equal(Usad2Encoder()(audio), ref)
    env.setenv("USAD2_LAYER", "9")
    with pytest.raises(ConfigError, match="layer must be in 0..4"):
        Usad2Encoder()
    env.setenv("USAD2_LAYER", "last")
    with pytest.raises(ConfigError, match="USAD2_LAYER='last'"):
        Usad2Encoder()


def test_only_one_encoder_name_in_the_module():
    import usad2.xares as module

    assert [n for n in dir(module) if n.endswith("Encoder")] == ["Usad2Encoder"]


def test_xares_llm_signature_and_masks(export, env):
    from usad2.xares import Usad2XaresLLM

    path, stride = export
    # XARES-LLM passes --model_args as keyword arguments; no environment needed
    encoder = Usad2XaresLLM(model=path, layer=None)
    assert isinstance(encoder, torch.nn.Module) and encoder.output_dim == 64 and not encoder.training
    g = torch.Generator().manual_seed(4)
    audio = torch.randn(3, 16000, generator=g) * 0.1
    lengths = [16000, 9000, 200]  # the last one is shorter than one window
    mask = (torch.arange(16000)[None] < torch.tensor(lengths)[:, None]).long()
    features, fmask = encoder(audio, mask)
    assert features.shape[:2] == fmask.shape and features.shape[0] == 3 and features.shape[2] == encoder.output_dim
    assert fmask.dtype == mask.dtype
    t = [-(-f // stride) for f in (98, 54, 1)]  # fbank frames 1 + (n - 400) // 160 -> output frames
    assert fmask.sum(1).tolist() == t and fmask[:, 0].tolist() == [1, 1, 1]
    # padding changes nothing: each sound alone gives its valid frames
    alone, alone_mask = encoder(audio[1:2, :9000], torch.ones(1, 9000, dtype=torch.long))
    torch.testing.assert_close(features[1, : t[1]], alone[0], atol=1e-5, rtol=0)
    assert alone_mask.sum().item() == t[1]
    assert features[1, t[1]:].abs().max() == 0
    # no mask: every sample real, as X-ARES-LLM's DummyEncoder allows
    features, fmask = encoder(audio[:1])
    assert fmask.dtype == torch.long and fmask.sum().item() == features.shape[1] == t[0]
    # the projector XARES-LLM puts on top: nn.Linear(encoder.output_dim, hidden)
    assert torch.nn.Linear(encoder.output_dim, 8)(features).shape == (1, t[0], 8)
