"""HEAR helper (issue 3 item 6, issue 15 item 1): frame-centre timestamps at 50 / 25 Hz, embeddings =
hidden states, the HEAR 2021 API contract, and the official validator run on an export."""
import pytest
import torch

import usad2.hear as hear
from usad2.models.export import save_export
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model


@pytest.fixture(params=[2, 4], ids=["50Hz", "25Hz"])
def export_path(request, tmp_path):
    torch.manual_seed(0)
    stride = request.param
    model = Usad2Model(get_preset("tiny", time_stride=stride, freq_stride=stride))
    return save_export(model, tmp_path / f"m{stride}.pt"), stride


@pytest.fixture
def audio():
    return torch.randn(3, 16000, generator=torch.Generator().manual_seed(2)) * 0.1


def test_timestamps_are_frame_centres(export_path, audio):
    path, stride = export_path
    model = hear.load_model(str(path))
    assert model.sample_rate == hear.sample_rate == 16000
    assert model.embedding_size == model.scene_embedding_size == model.timestamp_embedding_size == 64
    emb, ts = hear.timestamp_embeddings(audio, model)
    t = -(-98 // stride)  # 1 s -> 98 fbank frames -> ceil(98 / stride)
    assert emb.shape == (3, t, 64) and ts.shape == (3, t)
    expected = 12.5 + 10.0 * stride * torch.arange(t)
    assert torch.equal(ts[2], expected.float())
    assert ts[0, 1] - ts[0, 0] == 1000 / (100 / stride)  # 20 ms at 50 Hz, 40 ms at 25 Hz


def test_subsampler_receptive_field_is_centred_on_timestamp(export_path):
    """The fbank frames that influence subsampler frame t are centred on fbank frame stride * t."""
    path, stride = export_path
    model = hear.load_model(str(path))
    feats = torch.randn(1, 60, 128, requires_grad=True)
    sub, _ = model.model.encoder.subsampler(feats, torch.tensor([60]))
    t = 5
    sub[0, t].sum().backward()
    touched = torch.nonzero(feats.grad[0].abs().sum(-1)).flatten()
    centre_frame = (touched.min() + touched.max()).item() / 2
    centre_ms = 12.5 + 10.0 * centre_frame  # fbank frame j is centred at 12.5 + 10 j ms
    assert centre_ms == model.frame_centres_ms(t + 1)[t].item()


def test_embeddings_equal_hidden_states(export_path, audio):
    path, _ = export_path
    avg_model = hear.load_model(str(path))
    with torch.no_grad():  # as the helper runs (the fused attention kernel differs with autograd by ~1e-6)
        out = avg_model.model(audio)
    emb, _ = hear.timestamp_embeddings(audio, avg_model)
    torch.testing.assert_close(emb, torch.stack(out.hidden_states[1:]).mean(0), atol=0, rtol=0)
    torch.testing.assert_close(hear.scene_embeddings(audio, avg_model), emb.mean(1), atol=0, rtol=0)
    for layer in (0, 4):
        emb, _ = hear.timestamp_embeddings(audio, hear.load_model(str(path), layer=layer))
        assert torch.equal(emb, out.hidden_states[layer])


def test_bf16_embeddings_float32_and_close(export_path, audio):
    path, _ = export_path
    ref, ts_ref = hear.get_timestamp_embeddings(audio, hear.load_model(str(path)))
    model = hear.load_model(str(path), precision="bf16")
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert model.precision == "bf16" and emb.dtype == torch.float32 and torch.equal(ts, ts_ref)
    rel = ((emb - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.05
    with pytest.raises(Exception, match="precision must be one of"):
        hear.load_model(str(path), precision="fp16")


def test_chunking_keeps_timestamps_exact(export_path, audio):
    path, stride = export_path
    whole = hear.load_model(str(path))
    chunked = hear.load_model(str(path), chunk_seconds=0.3)
    assert chunked.chunk_frames == (28 if stride == 4 else 30)  # a multiple of the stride
    e1, t1 = hear.timestamp_embeddings(audio, whole)
    e2, t2 = hear.timestamp_embeddings(audio, chunked)
    assert e1.shape == e2.shape and torch.equal(t1, t2)
    # the first frames of chunk 1 differ (less context) but all are finite and valid
    assert torch.isfinite(e2).all() and not torch.equal(e1, e2)


def test_short_and_bad_audio(export_path):
    path, _ = export_path
    model = hear.load_model(str(path))
    emb, ts = hear.timestamp_embeddings(torch.zeros(2, 100), model)
    # padded to one window; the one frame's timestamp is the 6.25 ms sound's centre, inside it
    assert emb.shape == (2, 1, 64) and ts.tolist() == [[3.125], [3.125]]
    from usad2.errors import AudioError
    with pytest.raises(AudioError, match=r"\(n_sounds, n_samples\)"):
        hear.scene_embeddings(torch.zeros(16000), model)


def test_hear_api_contract(export_path):
    """The names, attributes and outputs the HEAR 2021 API specifies."""
    path, stride = export_path
    for name in ("load_model", "get_timestamp_embeddings", "get_scene_embeddings"):
        assert callable(getattr(hear, name))
    model = hear.load_model(str(path))
    assert isinstance(model, torch.nn.Module) and not model.training and not model.model.training
    assert all(not m.training for m in model.modules())
    for attr in ("sample_rate", "scene_embedding_size", "timestamp_embedding_size"):
        assert type(getattr(model, attr)) is int
    for seconds in (0.01, 0.0255, 1.07, 1.98):  # shorter than a window, one window, the validator's lengths
        n = int(seconds * model.sample_rate)
        audio = torch.rand(2, n) * 2 - 1
        emb, ts = hear.get_timestamp_embeddings(audio, model)
        assert emb.dtype == torch.float32 and ts.dtype == torch.float32
        assert emb.shape[:2] == ts.shape and emb.shape[0] == 2 and emb.shape[2] == model.timestamp_embedding_size
        duration_ms = 1000.0 * n / model.sample_rate
        assert 0 <= ts.min() and ts.max() <= duration_ms, (seconds, ts.max().item())
        if ts.shape[1] > 1:
            assert torch.allclose(ts.diff(dim=1), torch.tensor(10.0 * stride))
        scene = hear.get_scene_embeddings(audio, model)
        assert scene.dtype == torch.float32 and scene.shape == (2, model.scene_embedding_size)
    # eval mode: two identical calls give identical embeddings
    audio = torch.rand(2, 8000) * 2 - 1
    assert torch.equal(hear.get_timestamp_embeddings(audio, model)[0], hear.get_timestamp_embeddings(audio, model)[0])
    assert hear.timestamp_embeddings is hear.get_timestamp_embeddings
    assert hear.scene_embeddings is hear.get_scene_embeddings


def test_embed_with_lengths_matches_each_sound_alone(export_path):
    path, _ = export_path
    model = hear.load_model(str(path), chunk_seconds=0.3)
    audio = torch.randn(2, 9000, generator=torch.Generator().manual_seed(5)) * 0.1
    emb, frames = model.embed(audio, torch.tensor([9000, 5000]))
    alone, alone_frames = model.embed(audio[1:, :5000])
    assert frames[1] == alone_frames[0] == alone.shape[1]
    torch.testing.assert_close(emb[1, :frames[1]], alone[0], atol=1e-5, rtol=0)
    assert emb[1, frames[1]:].abs().max() == 0


def _validator_env(tmp_path):
    """Environment for the validator: real TensorFlow when importable, else the stand-in of test/hear_tf/."""
    import importlib.util
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    if importlib.util.find_spec("tensorflow") is None:
        stand_in = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hear_tf")
        env["PYTHONPATH"] = stand_in + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_official_hear_validator_accepts_the_module(export_path, tmp_path):
    """`python -m hearvalidator.validate usad2.hear --model EXPORT --device cpu`, the validator unchanged."""
    import subprocess
    import sys

    pytest.importorskip("hearvalidator", reason="pip install --ignore-requires-python hearvalidator==2021.0.6")
    path, _ = export_path
    proc = subprocess.run([sys.executable, "-m", "hearvalidator.validate", "usad2.hear", "--model", str(path),
                           "--device", "cpu"], cwd=tmp_path, env=_validator_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.rstrip().endswith("Looks good!")
    assert "Received torch Module" in proc.stdout and "Checking get_scene_embeddings" in proc.stdout
