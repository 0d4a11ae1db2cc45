"""HEAR helper (issue 3 item 6): frame-centre timestamps at 50 / 25 Hz, embeddings = hidden states."""
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
    assert emb.shape == (2, 1, 64) and ts.tolist() == [[12.5], [12.5]]
    from usad2.errors import AudioError
    with pytest.raises(AudioError, match=r"\(n_sounds, n_samples\)"):
        hear.scene_embeddings(torch.zeros(16000), model)
