"""Hugging Face teacher families (WavLM, Whisper HF + openai formats, AF-Whisper).

Each test writes a tiny random instance of the real architecture in the official checkpoint
format and loads it through the same code a real checkpoint takes; full-size loading is checked
on the meta device against the committed manifests.
"""
import dataclasses
import math

import pytest
import torch

from usad2.errors import TeacherError
from usad2.teachers import registry, testing
from usad2.teachers.families import af_whisper, common, hf_wavlm, make_manifests, whisper

SR = 16000


def tiny_card(name, **changes):
    """The package card `name` with tiny dimensions."""
    return dataclasses.replace(registry.load_card(name), **changes)


def two_utterances():
    """A 1 s and a 31 s utterance, zero-padded batch."""
    g = torch.Generator().manual_seed(0)
    wavs = torch.zeros(2, 31 * SR)
    wavs[0, :SR] = 0.1 * torch.randn(SR, generator=g)
    wavs[1] = 0.1 * torch.randn(31 * SR, generator=g)
    return wavs, torch.tensor([SR, 31 * SR])


def check_contract(teacher, rate, layers, width):
    """1 s and 31 s inputs: frame counts within 1 of duration x rate, shapes, padding, determinism."""
    wavs, lengths = two_utterances()
    outs, frames = teacher.extract(wavs, lengths, layers)
    assert len(outs) == len(layers)
    for f, seconds in zip(frames.tolist(), (1, 31)):
        assert abs(f - seconds * rate) <= 1, (f, seconds * rate)
    for o in outs:
        assert o.shape == (2, int(frames.max()), width) and o.dtype == torch.float32
        assert torch.all(o[0, frames[0]:] == 0)
        assert torch.isfinite(o).all()
    again, frames2 = teacher.extract(wavs, lengths, layers)
    assert torch.equal(frames, frames2)
    assert all(torch.equal(a, b) for a, b in zip(outs, again))
    return outs, frames


# ----------------------------------------------------------------------------- WavLM
@pytest.fixture(scope="module")
def wavlm_dir(tmp_path_factory):
    """A tiny WavLMModel saved with save_pretrained (config.json + model.safetensors)."""
    return testing.write_tiny_wavlm(tmp_path_factory.mktemp("wavlm"))


def wavlm_teacher(path, **opts):
    card = tiny_card("wavlm_base_plus", num_layers=2, width=32, options={"max_chunk_seconds": 30, **opts})
    return hf_wavlm.HFWavLMTeacher(card, checkpoint=path)


def test_wavlm_contract_and_frames(wavlm_dir):
    teacher = wavlm_teacher(wavlm_dir)
    assert all(not p.requires_grad for p in teacher.model.parameters()) and not teacher.model.training
    _, frames = check_contract(teacher, 50, [1, 2], 32)
    assert frames.tolist() == [49, 1549]  # (n - 400) // 320 + 1
    assert frames.tolist() == [teacher.num_frames(SR), teacher.num_frames(31 * SR)]


def test_wavlm_equals_transformers_forward_and_ignores_padding(wavlm_dir):
    from transformers import WavLMModel

    ref = WavLMModel.from_pretrained(wavlm_dir).eval()
    teacher = wavlm_teacher(wavlm_dir)
    wavs, lengths = two_utterances()
    with torch.no_grad():
        expect = ref(wavs[:1, :SR], output_hidden_states=True).hidden_states
    outs, frames = teacher.extract(wavs, lengths, [1, 2])
    for o, k in zip(outs, (1, 2)):
        torch.testing.assert_close(o[0, :frames[0]], expect[k][0], rtol=1e-5, atol=1e-5)
    alone, _ = teacher.extract(wavs[:1, :SR], lengths[:1], [2])
    torch.testing.assert_close(alone[0][0], outs[1][0, :frames[0]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [400, 399, 16000, 16080, 16399, 16400, 40000])
def test_wavlm_chunking_keeps_conv_frame_count(wavlm_dir, n):
    teacher = wavlm_teacher(wavlm_dir, max_chunk_seconds=0.2)  # 10 frames per chunk
    outs, frames = teacher.extract(0.1 * torch.ones(1, n), torch.tensor([n]), [2])
    assert frames.tolist() == [hf_wavlm.expected_frames(n)] == [teacher.num_frames(n)]
    assert outs[0].shape[1] == frames[0]


def test_conv_chunks_spans_cover_frames_exactly():
    spans = common.conv_chunks(16400, 320, 400, 10)
    assert spans[0] == (0, 3280) and spans[1] == (3200, 6480)
    total = sum((e - s - 400) // 320 + 1 for s, e in spans)
    assert total == (16400 - 400) // 320 + 1


def test_wavlm_legacy_hub_names_and_head_prefix(wavlm_dir, tmp_path):
    """A WavLMFor* .bin with `wavlm.` prefix, weight_g/weight_v and head weights loads the same."""
    state = common.read_hf_weights(str(wavlm_dir))
    legacy = {}
    for k, v in state.items():
        k = k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v")
        legacy["wavlm." + k] = v
    legacy["lm_head.weight"] = torch.zeros(4, 32)
    torch.save(legacy, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((wavlm_dir / "config.json").read_text())
    a = wavlm_teacher(wavlm_dir).extract(torch.ones(1, 8000) * 0.1, torch.tensor([8000]), [2])[0][0]
    b = wavlm_teacher(tmp_path).extract(torch.ones(1, 8000) * 0.1, torch.tensor([8000]), [2])[0][0]
    assert torch.equal(a, b)


def test_wavlm_ffn_option_and_normalize(wavlm_dir):
    x, n = 0.1 * torch.randn(1, 8000, generator=torch.Generator().manual_seed(1)), torch.tensor([8000])
    block = wavlm_teacher(wavlm_dir).extract(x, n, [1])[0][0]
    card = tiny_card("wavlm_base_plus", num_layers=2, width=32, layer_tensor="ffn")
    ffn = hf_wavlm.HFWavLMTeacher(card, checkpoint=wavlm_dir).extract(x, n, [1])[0][0]
    assert ffn.shape == block.shape and not torch.allclose(ffn, block)
    plain = wavlm_teacher(wavlm_dir).extract(x * 5, n, [2])[0][0]
    normed = wavlm_teacher(wavlm_dir, normalize=True)
    assert normed.normalize and not wavlm_teacher(wavlm_dir).normalize
    torch.testing.assert_close(normed.extract(x * 5, n, [2])[0][0], normed.extract(x, n, [2])[0][0],
                               rtol=1e-4, atol=1e-4)
    assert not torch.allclose(plain, wavlm_teacher(wavlm_dir).extract(x, n, [2])[0][0])


def test_wavlm_through_registry_and_card_mismatch(wavlm_dir, tmp_path):
    card = registry.load_card("wavlm_base_plus").to_dict()
    card.update(num_layers=2, width=32)
    import yaml

    (tmp_path / "wavlm_base_plus.yaml").write_text(yaml.safe_dump(card))
    teacher = registry.build_teacher("wavlm_base_plus", card_dirs=[tmp_path], checkpoint=wavlm_dir)
    assert isinstance(teacher, hf_wavlm.HFWavLMTeacher) and teacher.frame_offset == 0.0125
    with pytest.raises(TeacherError, match="card says 12 layers x 768"):
        registry.build_teacher("wavlm_base_plus", checkpoint=wavlm_dir)
    with pytest.raises(TeacherError, match="does not exist"):
        registry.build_teacher("wavlm_base_plus", checkpoint=tmp_path / "nowhere")


def test_wavlm_manifest_loads_on_meta():
    from transformers import WavLMConfig, WavLMModel

    manifest = common.read_manifest("wavlm")
    with torch.device("meta"):
        model = WavLMModel(WavLMConfig(**make_manifests.WAVLM_BASE_PLUS))
    state = hf_wavlm.convert_state(common.meta_state_from_manifest(manifest))
    common.load_strict(model, state, "wavlm manifest", assign=True)
    assert 94e6 < sum(math.prod(s) for s in manifest["params"].values()) < 95e6
    del state["encoder.layer_norm.weight"]
    with pytest.raises(TeacherError, match="1 missing keys"):
        common.load_strict(model, state, "wavlm manifest", assign=True)


# ----------------------------------------------------------------------------- Whisper
@pytest.fixture(scope="module")
def whisper_ckpts(tmp_path_factory):
    """The same tiny Whisper as an HF WhisperForConditionalGeneration dir and an openai .pt file."""
    root = tmp_path_factory.mktemp("whisper")
    return testing.write_tiny_whisper(root / "hf", "hf"), testing.write_tiny_whisper(root, "openai")


def whisper_teacher(path, **changes):
    return whisper.WhisperTeacher(tiny_card("whisper_large_v3", num_layers=2, width=32, distill_layers=None,
                                            **changes), checkpoint=path)


def test_log_mel_equals_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor

    x = 0.1 * torch.randn(3 * SR, generator=torch.Generator().manual_seed(2))
    ref = WhisperFeatureExtractor(feature_size=128)(x.numpy(), sampling_rate=SR, return_tensors="pt").input_features
    windows, owner, real = whisper.split_windows(x[None], torch.tensor([x.numel()]))
    assert owner == [0] and real == [3 * SR] and windows.shape == (1, 480000)
    torch.testing.assert_close(whisper.log_mel(windows, whisper.mel_filters(128)), ref, rtol=1e-4, atol=1e-4)


def test_whisper_contract_both_formats_agree(whisper_ckpts):
    hf_dir, pt = whisper_ckpts
    outs, frames = check_contract(whisper_teacher(hf_dir), 50, [1, 2], 32)
    assert frames.tolist() == [50, 1550]
    wavs, lengths = two_utterances()
    outs_openai, _ = whisper_teacher(pt).extract(wavs, lengths, [1, 2])
    assert all(torch.equal(a, b) for a, b in zip(outs, outs_openai))


def test_whisper_equals_transformers_encoder(whisper_ckpts):
    from transformers import WhisperFeatureExtractor, WhisperModel

    hf_dir, _ = whisper_ckpts
    ref = WhisperModel.from_pretrained(hf_dir).encoder.eval()
    x = 0.1 * torch.randn(1, 16100, generator=torch.Generator().manual_seed(3))
    feats = WhisperFeatureExtractor(feature_size=128)(x[0].numpy(), sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        expect = ref(feats, output_hidden_states=True).hidden_states
    outs, frames = whisper_teacher(hf_dir).extract(x, torch.tensor([16100]), [1, 2])
    assert frames.tolist() == [51]  # ceil(16100 / 320)
    for o, k in zip(outs, (1, 2)):
        torch.testing.assert_close(o[0], expect[k][0, :51], rtol=1e-4, atol=1e-4)


def test_whisper_ffn_is_fc2_output(whisper_ckpts):
    hf_dir, _ = whisper_ckpts
    x, n = 0.1 * torch.randn(1, SR, generator=torch.Generator().manual_seed(4)), torch.tensor([SR])
    ffn = whisper_teacher(hf_dir, layer_tensor="ffn").extract(x, n, [2])[0][0]
    block = whisper_teacher(hf_dir).extract(x, n, [1, 2])[0][1]
    assert ffn.shape == block.shape == (1, 50, 32)
    assert not torch.allclose(ffn, block)


def test_whisper_openai_bad_file(tmp_path):
    torch.save({"model_state_dict": {}}, tmp_path / "x.pt")
    with pytest.raises(TeacherError, match="needs 'dims' and 'model_state_dict'"):
        whisper_teacher(tmp_path / "x.pt")
    with pytest.raises(TeacherError, match="unknown encoder key encoder.blocks.0.attn.rotary.weight"):
        whisper.openai_to_hf({"encoder.blocks.0.attn.rotary.weight": torch.zeros(1)})


@pytest.mark.parametrize("name", ["whisper_hf", "whisper_openai"])
def test_whisper_large_v3_manifests_load_on_meta(name):
    manifest = common.read_manifest(name)
    state = common.meta_state_from_manifest(manifest)
    if name == "whisper_hf":
        state = whisper.hf_encoder_state(state)
        config = make_manifests.WHISPER_LARGE_V3
    else:
        state = whisper.openai_to_hf(state)
        config = whisper.openai_dims_to_config(manifest["dims"])
    with torch.device("meta"):
        encoder = whisper.build_encoder(config)
    common.load_strict(encoder, state, name, assign=True)
    assert encoder.embed_positions.weight.shape == (1500, 1280) and len(encoder.layers) == 32
    assert sum(math.prod(s) for s in manifest["params"].values()) > 1.5e9  # encoder + decoder


# ----------------------------------------------------------------------------- AF-Whisper
@pytest.fixture(scope="module")
def af_ckpts(tmp_path_factory):
    """A tiny AF3 sound tower in the original release layout and in the transformers-5 layout."""
    root = tmp_path_factory.mktemp("af3")
    return (testing.write_tiny_af_whisper(root / "release", "release"),
            testing.write_tiny_af_whisper(root / "hf", "hf"))


def af_teacher(path, **opts):
    card = tiny_card("af_whisper", num_layers=2, width=32, distill_layers=None, options={"attention_mask": True, **opts})
    return af_whisper.AFWhisperTeacher(card, checkpoint=path)


def test_af_whisper_contract_and_layouts(af_ckpts):
    release, converted = af_ckpts
    outs, frames = check_contract(af_teacher(release), 25, [1, 2], 32)
    assert frames.tolist() == [25, 775]
    wavs, lengths = two_utterances()
    other, _ = af_teacher(converted).extract(wavs, lengths, [1, 2])
    assert all(torch.equal(a, b) for a, b in zip(outs, other))
    tower, _ = af_teacher(release / "sound_tower").extract(wavs, lengths, [2])
    assert torch.equal(tower[0], outs[1])


def test_af_whisper_last_layer_is_encoder_output_and_mask(af_ckpts):
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    release, _ = af_ckpts
    ref = Qwen2AudioEncoder.from_pretrained(release / "sound_tower").eval()
    x = 0.1 * torch.randn(1, 30 * SR, generator=torch.Generator().manual_seed(5))
    teacher = af_teacher(release)
    feats = whisper.log_mel(x, teacher.filters)
    with torch.no_grad():
        expect = ref(feats).last_hidden_state  # a full window: the mask hides nothing
    out, frames = teacher.extract(x, torch.tensor([30 * SR]), [2])
    assert frames.tolist() == [750]
    torch.testing.assert_close(out[0], expect, rtol=1e-4, atol=1e-4)
    short = (x[:, :SR], torch.tensor([SR]))
    masked = teacher.extract(*short, [2])[0][0]
    unmasked = af_teacher(release, attention_mask=False).extract(*short, [2])[0][0]
    assert masked.shape == unmasked.shape == (1, 25, 32) and not torch.allclose(masked, unmasked)


def test_af_whisper_frame_formula():
    assert af_whisper.window_frames(480000) == (1500, 750)
    assert af_whisper.window_frames(16000) == (50, 25)
    assert af_whisper.window_frames(16161) == (51, 25)  # 102 mel frames


def test_af_whisper_manifest_loads_on_meta():
    manifest = common.read_manifest("af_whisper")
    with torch.device("meta"):
        encoder = af_whisper.build_encoder({})
    common.load_strict(encoder, common.meta_state_from_manifest(manifest), "af_whisper manifest", assign=True)
    assert encoder.config.d_model == 1280 and len(encoder.layers) == 32
    assert 0.6e9 < sum(math.prod(s) for s in manifest["params"].values()) < 0.66e9
