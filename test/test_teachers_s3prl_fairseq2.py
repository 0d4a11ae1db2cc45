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


# ----------------------------------------------------------------------------- fairseq2 w2v-BERT
TINY_W2VBERT = dict(encoder=dict(model_dim=32, num_encoder_layers=2, num_encoder_attn_heads=2, ffn_inner_dim=64,
                                 depthwise_conv_kernel_size=5),
                    config=dict(final_dim=16, quantized_dim=16, num_codebook_entries=8),
                    bert=dict(num_bert_encoder_layers=1))


def w2vbert_card(**opts):
    return TeacherCard(name="w2vbert_tiny", family="fairseq2", domain="speech", sample_rate=SR, frame_rate=50,
                       frame_offset=0.0175, num_layers=2, width=32,
                       options={"model_family": "w2vbert", "arch": "600m", **TINY_W2VBERT, **opts})


@pytest.fixture(scope="module")
def w2vbert_ckpt(tmp_path_factory):
    """A tiny fairseq2 w2v-BERT built by fairseq2's factory, saved as fairseq2 checkpoints are ({"model": state})."""
    pytest.importorskip("fairseq2")
    from fairseq2.models.w2vbert import create_w2vbert_model

    from usad2.teachers.families import fairseq2 as f2

    torch.manual_seed(0)
    model = create_w2vbert_model(f2.make_w2vbert_config(w2vbert_card().options))
    for layer in model.w2v2_model.encoder.layers:  # non-trivial BatchNorm statistics, as a trained model has
        layer.conv.batch_norm.running_mean.normal_(0, 0.1)
        layer.conv.batch_norm.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("fairseq2") / "w2vbert_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def test_fairseq2_w2vbert_contract_through_registry(w2vbert_ckpt, tmp_path):
    import yaml

    from usad2.teachers.families import fairseq2 as f2

    (tmp_path / "w2vbert_tiny.yaml").write_text(yaml.safe_dump(w2vbert_card().to_dict()))
    teacher = registry.build_teacher("w2vbert_tiny", card_dirs=[tmp_path], checkpoint=w2vbert_ckpt)
    assert isinstance(teacher, f2.Fairseq2W2VBertTeacher) and not teacher.model.training
    assert (teacher.stride, teacher.num_mels, teacher.max_frames) == (2, 80, 1500)
    outs, frames = check_contract(teacher, 50, [1, 2], 32)
    # Kaldi framing: 1 + (n - 400) // 160 fbank frames, stacked by 2.
    assert frames.tolist() == [49, 1549] == [teacher.num_frames(SR), teacher.num_frames(31 * SR)]
    assert torch.all(outs[0][0, 49:] == 0) and not torch.allclose(outs[0], outs[1])
    assert teacher.frame_times(2) == pytest.approx([0.0175, 0.0375])


def test_fairseq2_w2vbert_front_end_is_fairseq2_fbank(w2vbert_ckpt):
    """Layer 1 equals a hand-run of the model on standardised torchaudio Kaldi fbank (x 2**15), stacked by 2."""
    import torchaudio
    from fairseq2.models.transformer import AttentionBiasCache
    from fairseq2.nn import BatchLayout

    from usad2.teachers.families import fairseq2 as f2

    teacher = f2.Fairseq2W2VBertTeacher(w2vbert_card(), checkpoint=w2vbert_ckpt)
    wav = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(3))
    got, frames = teacher.extract(wav, torch.tensor([8000]), [1])
    fb = torchaudio.compliance.kaldi.fbank(wav * 2 ** 15, num_mel_bins=80, dither=0.0, sample_frequency=SR)
    assert fb.shape[0] == 48 and frames.tolist() == [24]
    fb = (fb - fb.mean(0)) / fb.std(0)
    w2v2 = teacher.model.w2v2_model
    with torch.inference_mode():
        feats, layout, _ = w2v2.encoder_frontend.extract_features(fb[None], BatchLayout.of(fb[None]))
        assert feats.shape == (1, 24, 160)
        x, _ = w2v2.encoder_frontend.process_features(feats, layout, None)
        ref = w2v2.encoder.layers[0](x, layout, AttentionBiasCache())
    torch.testing.assert_close(got[0], ref, atol=2e-3, rtol=1e-3)


def test_fairseq2_w2vbert_chunks_ffn_and_errors(w2vbert_ckpt, w2v_ckpt):
    from usad2.teachers.families import fairseq2 as f2

    assert type(f2.build_fairseq2_teacher(w2v_card(), checkpoint=w2v_ckpt)) is f2.Fairseq2Wav2Vec2Teacher

    whole = f2.Fairseq2W2VBertTeacher(w2vbert_card(), checkpoint=w2vbert_ckpt)
    chunked = f2.Fairseq2W2VBertTeacher(w2vbert_card(max_chunk_seconds=0.2), checkpoint=w2vbert_ckpt)
    assert chunked.max_frames == 10
    for n in (100, 559, 560, 719, 720, 4000, 16000):
        x = 0.1 * torch.randn(1, n, generator=torch.Generator().manual_seed(n))
        a, fa = chunked.extract(x, torch.tensor([n]), [2])
        b, fb = whole.extract(x, torch.tensor([n]), [2])
        assert fa.tolist() == fb.tolist() == [whole.num_frames(n)] == [max(1, (1 + (n - 400) // 160) // 2)]
        assert a[0].shape == b[0].shape
    # Chunks only cut the encoder context: the first chunk's frames see no difference in their inputs
    # but attend to fewer frames, so outputs differ while shapes do not.
    assert not torch.allclose(a[0], b[0])
    ffn = f2.Fairseq2W2VBertTeacher(w2vbert_card(), checkpoint=w2vbert_ckpt)
    ffn.card.layer_tensor = "ffn"
    x = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(ffn.extract(x, torch.tensor([8000]), [1])[0][0],
                              whole.extract(x, torch.tensor([8000]), [1])[0][0])
    with pytest.raises(TeacherError, match="max_seq_len 4096"):
        f2.Fairseq2W2VBertTeacher(w2vbert_card(max_chunk_seconds=90), checkpoint=w2vbert_ckpt)
    with pytest.raises(TeacherError, match="unknown arch '1b'"):
        f2.make_w2vbert_config({"arch": "1b"})
    with pytest.raises(TeacherError, match="model_family 'hubert' is not one of"):
        f2.build_fairseq2_teacher(w2vbert_card(model_family="hubert"), checkpoint=w2vbert_ckpt)
    wide = w2vbert_card()
    wide.options["encoder"] = dict(TINY_W2VBERT["encoder"], model_dim=48)
    wide.width = 48
    with pytest.raises(TeacherError, match="fairseq2 cannot load it as w2vbert"):
        f2.Fairseq2W2VBertTeacher(wide, checkpoint=w2vbert_ckpt)


def test_fairseq2_w2vbert_600m_manifest_loads_on_meta():
    pytest.importorskip("fairseq2")
    from fairseq2.models.w2vbert import create_w2vbert_model

    from usad2.teachers import registry as reg
    from usad2.teachers.families import common
    from usad2.teachers.families import fairseq2 as f2

    card = reg.load_card("w2v_bert")
    manifest = common.read_manifest("fairseq2_w2vbert_600m")
    assert (manifest["model_family"], manifest["arch"]) == (card.options["model_family"], card.options["arch"])
    with torch.device("meta"):
        model = create_w2vbert_model(f2.make_w2vbert_config(card.options))
    common.load_strict(model, common.meta_state_from_manifest(manifest), "manifest", assign=True)
    assert len(model.w2v2_model.encoder.layers) == card.num_layers == 24
    assert manifest["params"]["w2v2_model.encoder_frontend.model_dim_proj.weight"] == [card.width, 160]
    assert 605e6 < sum(int(torch.tensor(s).prod()) for s in manifest["params"].values()) < 615e6
