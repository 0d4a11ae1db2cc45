"""s3prl-upstream teacher family (and, where implemented, fairseq2).

s3prl: the `fbank` baseline needs no checkpoint; `wavlm_local` loads a tiny WavLM written in the
official unilm/s3prl checkpoint format ({"cfg": dict, "model": state dict}) through s3prl's own
loader, exactly as a real WavLM Base+ file would be.
"""
import fractions

import pytest
import torch

from usad2.errors import TeacherError
from usad2.teachers import registry
from usad2.teachers.base import TeacherCard

pytest.importorskip("s3prl")
from usad2.teachers.families import s3prl as s3prl_family  # noqa: E402

SR = 16000


def two_utterances():
    g = torch.Generator().manual_seed(0)
    wavs = torch.zeros(2, 31 * SR)
    wavs[0, :SR] = 0.1 * torch.randn(SR, generator=g)
    wavs[1] = 0.1 * torch.randn(31 * SR, generator=g)
    return wavs, torch.tensor([SR, 31 * SR])


def s3prl_card(name, upstream, num_layers, width, rate, **opts):
    return TeacherCard(name=name, family="s3prl", domain="speech", sample_rate=SR, frame_rate=rate,
                       num_layers=num_layers, width=width, options=dict(upstream=upstream, **opts))


TINY_WAVLM_CFG = dict(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
                      conv_feature_layers="[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2", conv_pos=16,
                      conv_pos_groups=2, relative_position_embedding=True, num_buckets=16, max_distance=64,
                      gru_rel_pos=True, normalize=False, extractor_mode="default", layer_norm_first=False)


@pytest.fixture(scope="module")
def wavlm_ckpt(tmp_path_factory):
    """A tiny WavLM in the official unilm checkpoint format."""
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    torch.manual_seed(0)
    model = WavLM(WavLMConfig(TINY_WAVLM_CFG))
    path = tmp_path_factory.mktemp("s3prl") / "WavLM-Tiny.pt"
    torch.save({"cfg": dict(TINY_WAVLM_CFG), "model": model.state_dict()}, path)
    return path


def check_contract(teacher, rate, layers, width):
    wavs, lengths = two_utterances()
    outs, frames = teacher.extract(wavs, lengths, layers)
    for f, seconds in zip(frames.tolist(), (1, 31)):
        assert abs(f - seconds * rate) <= 1, (f, seconds * rate)
    for o in outs:
        assert o.shape == (2, int(frames.max()), width)
        assert torch.isfinite(o).all()
    again, frames2 = teacher.extract(wavs, lengths, layers)
    assert torch.equal(frames, frames2) and all(torch.equal(a, b) for a, b in zip(outs, again))
    return outs, frames


def test_s3prl_fbank_baseline_without_checkpoint():
    teacher = s3prl_family.S3prlTeacher(s3prl_card("s3prl_fbank", "fbank", 1, 240, 100))
    assert teacher.frame_rate == fractions.Fraction(100) and teacher.stride == 160
    _, frames = check_contract(teacher, 100, [1], 240)
    assert frames.tolist() == [100, 3100]


def test_s3prl_wavlm_local_checkpoint_and_chunking(wavlm_ckpt):
    card = s3prl_card("s3prl_wavlm_tiny", "wavlm_local", 2, 32, 50)
    teacher = s3prl_family.S3prlTeacher(card, checkpoint=wavlm_ckpt)
    assert not teacher.upstream.training
    outs, frames = check_contract(teacher, 50, [1, 2], 32)
    assert frames.tolist() == [50, 1550]  # (n - 1) // 320 + 1
    assert not torch.allclose(outs[0], outs[1])
    short = s3prl_family.S3prlTeacher(s3prl_card("s3prl_wavlm_tiny", "wavlm_local", 2, 32, 50, max_chunk_seconds=0.5),
                                      checkpoint=wavlm_ckpt)
    x = 0.1 * torch.randn(1, 20000, generator=torch.Generator().manual_seed(1))
    chunked, cframes = short.extract(x, torch.tensor([20000]), [2])
    whole, wframes = teacher.extract(x, torch.tensor([20000]), [2])
    assert cframes.tolist() == wframes.tolist() == [63] and chunked[0].shape == whole[0].shape


def test_s3prl_through_registry_and_errors(wavlm_ckpt, tmp_path):
    import yaml

    card = s3prl_card("s3prl_wavlm_tiny", "wavlm_local", 2, 32, 50).to_dict()
    (tmp_path / "s3prl_wavlm_tiny.yaml").write_text(yaml.safe_dump(card))
    teacher = registry.build_teacher("s3prl_wavlm_tiny", card_dirs=[tmp_path], checkpoint=wavlm_ckpt)
    assert isinstance(teacher, s3prl_family.S3prlTeacher)
    with pytest.raises(TeacherError, match="card says 12 layers"):
        s3prl_family.S3prlTeacher(s3prl_card("x", "wavlm_local", 12, 32, 50), checkpoint=wavlm_ckpt)
    with pytest.raises(TeacherError, match="no upstream named 'no_such_upstream'"):
        s3prl_family.S3prlTeacher(s3prl_card("x", "no_such_upstream", 1, 1, 50))


# ----------------------------------------------------------------------------- fairseq2 wav2vec2
TINY_W2V_ENCODER = dict(model_dim=32, feature_dim=16, feature_extractor_layer_descs=[[16, 10, 5]] + [[16, 3, 2]] * 4
                        + [[16, 2, 2]] * 2, pos_conv_kernel_size=16, num_pos_conv_groups=2, num_encoder_layers=2,
                        num_encoder_attn_heads=2, ffn_inner_dim=64)


def w2v_card(**opts):
    return TeacherCard(name="w2v_tiny", family="fairseq2", domain="speech", sample_rate=SR, frame_rate=50,
                       frame_offset=0.0125, num_layers=2, width=32,
                       options=dict(arch="base", encoder=TINY_W2V_ENCODER, config={"final_dim": 16}, **opts))


@pytest.fixture(scope="module")
def w2v_ckpt(tmp_path_factory):
    """A tiny fairseq2 wav2vec2 built by fairseq2's factory, saved as fairseq2 checkpoints are ({"model": state})."""
    pytest.importorskip("fairseq2")
    from fairseq2.models.wav2vec2 import create_wav2vec2_model

    from usad2.teachers.families import fairseq2 as f2

    torch.manual_seed(0)
    model = create_wav2vec2_model(f2.make_config(w2v_card().options))
    path = tmp_path_factory.mktemp("fairseq2") / "w2v_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def test_fairseq2_wav2vec2_contract(w2v_ckpt):
    from usad2.teachers.families import fairseq2 as f2

    teacher = f2.Fairseq2Wav2Vec2Teacher(w2v_card(), checkpoint=w2v_ckpt)
    assert (teacher.hop, teacher.receptive) == (320, 400) and not teacher.model.training
    outs, frames = check_contract(teacher, 50, [1, 2], 32)
    assert frames.tolist() == [49, 1549] == [teacher.num_frames(SR), teacher.num_frames(31 * SR)]
    assert torch.all(outs[0][0, 49:] == 0) and not torch.allclose(outs[0], outs[1])
    ffn = f2.Fairseq2Wav2Vec2Teacher(w2v_card(), checkpoint=w2v_ckpt)
    ffn.card.layer_tensor = "ffn"
    x = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(ffn.extract(x, torch.tensor([8000]), [1])[0][0],
                              teacher.extract(x, torch.tensor([8000]), [1])[0][0])


def test_fairseq2_chunking_and_errors(w2v_ckpt, tmp_path):
    from usad2.teachers.families import fairseq2 as f2

    chunked = f2.Fairseq2Wav2Vec2Teacher(w2v_card(max_chunk_seconds=0.2), checkpoint=w2v_ckpt)
    for n in (399, 400, 16399, 16400, 40000):
        _, frames = chunked.extract(0.1 * torch.ones(1, n), torch.tensor([n]), [2])
        assert frames.tolist() == [chunked.num_frames(n)] == [max(1, (n - 400) // 320 + 1)]
    bad = dict(w2v_card().options, encoder=dict(TINY_W2V_ENCODER, model_dim=48))
    card = TeacherCard(**dict(w2v_card().__dict__, options=bad, width=48))
    with pytest.raises(TeacherError, match="fairseq2 cannot load it"):
        f2.Fairseq2Wav2Vec2Teacher(card, checkpoint=w2v_ckpt)


def test_fairseq2_wav2vec2_base_manifest_loads_on_meta():
    pytest.importorskip("fairseq2")
    from fairseq2.models.wav2vec2 import create_wav2vec2_model

    from usad2.teachers.families import common
    from usad2.teachers.families import fairseq2 as f2

    manifest = common.read_manifest("fairseq2_wav2vec2_base")
    with torch.device("meta"):
        model = create_wav2vec2_model(f2.make_config({"arch": "base"}))
    common.load_strict(model, common.meta_state_from_manifest(manifest), "manifest", assign=True)
    assert len(model.encoder.layers) == 12
    assert 94e6 < sum(int(torch.tensor(s).prod()) for s in manifest["params"].values()) < 96e6
