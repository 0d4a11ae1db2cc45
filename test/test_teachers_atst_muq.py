"""ATST-Frame and MuQ teacher families: tiny random instances written in the official checkpoint
formats (Lightning .ckpt; MuQ hub dir) and loaded through the code a real checkpoint takes, plus
the full-size manifests loaded on the meta device."""
import json

import pytest
import torch
import torchaudio

from usad2.errors import TeacherError
from usad2.teachers import testing
from usad2.teachers.base import TeacherCard
from usad2.teachers.families import atst_frame, muq
from usad2.teachers.families.common import load_strict, meta_state_from_manifest, read_manifest

SR = 16000


def noise_batch(seconds, seed=0):
    """Zero-padded (B, N) batch of random signals with the given durations, and their lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([int(s * SR) for s in seconds])
    wavs = torch.zeros(len(seconds), int(lengths.max()))
    for i, n in enumerate(lengths):
        wavs[i, :n] = 0.1 * torch.randn(int(n), generator=g)
    return wavs, lengths


def check_acceptance(teacher, layers, width):
    """Issue 4 acceptance: 1 s and 31 s inputs, frames within 1 of duration x rate, repeatable."""
    wavs, lengths = noise_batch([1.0, 31.0])
    outs, frames = teacher.extract(wavs, lengths, layers)
    again, frames2 = teacher.extract(wavs, lengths, layers)
    assert len(outs) == len(layers)
    for dur, n in zip([1.0, 31.0], frames.tolist()):
        assert abs(n - dur * float(teacher.frame_rate)) <= 1
    for o, a in zip(outs, again):
        assert o.shape == (2, int(frames.max()), width)
        assert torch.equal(o, a)
        assert torch.isfinite(o).all()
        assert o[0, frames[0]:].abs().sum() == 0  # padding stays zero
        assert o[0, :frames[0]].std() > 0
    assert torch.equal(frames, frames2)
    return outs, frames


# ----------------------------------------------------------------------------- ATST-Frame

ATST_TINY = testing.atst_config()


def atst_card(**options):
    return TeacherCard(name="atst_tiny", family="atst_frame", domain="audio", sample_rate=SR, frame_rate=25,
                       frame_offset=0.015, num_layers=ATST_TINY["depth"], width=ATST_TINY["dim"],
                       options={"num_heads": 2, **options})


@pytest.fixture(scope="module")
def atst_ckpt(tmp_path_factory):
    """A tiny ATST-Frame in the official Lightning layout: student + EMA teacher, heads, hparams."""
    return testing.write_tiny_atst(tmp_path_factory.mktemp("atst") / "atstframe_tiny.ckpt")


def test_atst_acceptance_and_teacher_branch(atst_ckpt):
    teacher = atst_frame.AtstFrameTeacher(atst_card(), checkpoint=atst_ckpt)
    assert not any(p.requires_grad for p in teacher.model.parameters())
    outs, frames = check_acceptance(teacher, [1, 2], 32)
    assert frames.tolist() == [25, 775]
    # the EMA teacher's weights were loaded, not the student's
    ckpt = torch.load(atst_ckpt, weights_only=True)["state_dict"]
    assert torch.equal(teacher.model.pos_embed, ckpt["model.teacher.encoder.pos_embed"])
    assert not torch.equal(teacher.model.pos_embed, ckpt["model.student.encoder.pos_embed"])
    # normalised block outputs (norm_frame, unit LayerNorm): per-frame mean ~0, std ~1
    assert outs[1][1, :775].mean(-1).abs().max() < 1e-4


def test_atst_batch_invariance_and_chunks(atst_ckpt):
    """Each utterance's features do not depend on its batch mates; chunks restart positions."""
    teacher = atst_frame.AtstFrameTeacher(atst_card(batch_chunks=3), checkpoint=atst_ckpt)
    wavs, lengths = noise_batch([1.0, 31.0])
    (alone,), n_alone = teacher.extract(wavs[:1, :SR], lengths[:1], [2])
    (both,), _ = teacher.extract(wavs, lengths, [2])
    assert n_alone.tolist() == [25]
    torch.testing.assert_close(both[0, :25], alone[0], atol=1e-5, rtol=1e-5)
    # a 31 s input is 4 chunks (250 + 250 + 250 + 25 frames): chunk 2's first frame uses position 1
    mel = teacher.frontend(wavs[1, :int(lengths[1])])
    (direct,) = teacher.model(mel[None, :, 1000:2000], torch.tensor([250]), {2}).values()
    (full,), _ = teacher.extract(wavs[1:], lengths[1:], [2])
    torch.testing.assert_close(full[0, 250:500], direct[0], atol=1e-5, rtol=1e-5)


def test_atst_patch_layout_is_mel_bin_major():
    """The official Rearrange '(h p1) (w p2) -> (p1 p2 c)' puts feature 4 * bin + frame-in-patch."""
    pe = atst_frame.PatchEmbed(dim=1)
    with torch.no_grad():
        pe.patch_embed.weight.zero_()
        pe.patch_embed.bias.zero_()
        pe.patch_embed.weight[0, 4 * 5 + 2] = 1.0
    mel = torch.randn(1, 64, 41)
    out = pe(mel)
    assert out.shape == (1, 10, 1)
    torch.testing.assert_close(out[0, :, 0], mel[0, 5, 2:40:4])


def test_atst_frontend_peak_and_range():
    """A 1 kHz tone peaks in the mel band holding 1 kHz; top_db 80 then min-max scaling bounds the range."""
    t = torch.arange(SR) / SR
    mel = atst_frame.AtstMelFrontend()(torch.sin(2 * torch.pi * 1000 * t))
    assert mel.shape == (64, SR // 160 + 1)
    fb = atst_frame.AtstMelFrontend().mel.mel_scale.fb  # (freq bins, 64)
    assert int(mel[:, 50].argmax()) == int(fb[round(1000 / SR * 1024)].argmax())
    assert float(mel.max() - mel.min()) == pytest.approx(80 / (atst_frame.DB_MAX - atst_frame.DB_MIN) * 2, rel=1e-4)


def test_atst_ffn_layer_is_mlp_branch(atst_ckpt):
    teacher = atst_frame.AtstFrameTeacher(atst_card(), checkpoint=atst_ckpt)
    teacher.card.layer_tensor = "ffn"
    wavs, lengths = noise_batch([1.0])
    (ffn,), _ = teacher.extract(wavs, lengths, [1])
    mel = teacher.frontend(wavs[0])
    x = teacher.model.patch_embed(mel[None, :, :100]) + teacher.model.pos_embed[:, 1:26]
    blk = teacher.model.blocks[0]
    x = x + blk.attn(blk.norm1(x), torch.zeros(1, 1, 1, 25))
    torch.testing.assert_close(ffn[0], blk.mlp(blk.norm2(x))[0], atol=1e-5, rtol=1e-5)


def test_atst_bad_checkpoints(tmp_path, atst_ckpt):
    with pytest.raises(TeacherError, match="num_layers|layers"):
        card = atst_card()
        card.num_layers = 12
        atst_frame.AtstFrameTeacher(card, checkpoint=atst_ckpt)
    bad = tmp_path / "bad.ckpt"
    torch.save({"weights": {}}, bad)
    with pytest.raises(TeacherError, match="not a Lightning checkpoint"):
        atst_frame.AtstFrameTeacher(atst_card(), checkpoint=bad)
    state = torch.load(atst_ckpt, weights_only=True)["state_dict"]
    del state["model.teacher.encoder.blocks.1.mlp.fc2.bias"]
    torch.save({"state_dict": state}, bad)
    with pytest.raises(TeacherError, match="missing keys"):
        atst_frame.AtstFrameTeacher(atst_card(), checkpoint=bad)


def test_atst_manifest_meta_load():
    """The full-size official state_dict (from the manifest) fills FrameAST-base exactly."""
    manifest = read_manifest("atst_frame")
    state = atst_frame.encoder_state_from_checkpoint(meta_state_from_manifest(manifest), "manifest")
    cfg = atst_frame.encoder_config_from_state(state)
    assert cfg == {"dim": 768, "depth": 12, "num_heads": 12, "max_patches": 250, "mlp_ratio": 4.0}
    with torch.device("meta"):
        model = atst_frame.FrameAST(**cfg)
    model.load_state_dict(state, strict=True, assign=True)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(85.4e6, rel=0.01)


def test_atst_through_registry(tmp_path, atst_ckpt):
    from usad2.teachers.registry import build_teacher

    (tmp_path / "atst_tiny.yaml").write_text(
        "name: atst_tiny\nfamily: atst_frame\ndomain: audio\nsample_rate: 16000\nframe_rate: 25\n"
        "frame_offset: 0.015\nnum_layers: 2\nwidth: 32\noptions: {num_heads: 2}\n")
    teacher = build_teacher("atst_tiny", card_dirs=[str(tmp_path)], checkpoint=atst_ckpt)
    assert isinstance(teacher, atst_frame.AtstFrameTeacher)
    wavs, lengths = noise_batch([0.5, 0.0331])
    outs, frames = teacher.extract(wavs, lengths, [2])
    assert frames.tolist() == [(8000 // 160 + 1) // 4, (529 // 160 + 1) // 4] == [12, 1]


# ----------------------------------------------------------------------------- MuQ

def write_muq_dir(path, fmt="safetensors", weight_norm_names="g_v", seed=0):
    """A tiny MuQ hub dir (usad2.teachers.testing): config.json + weights incl. training-only heads."""
    return testing.write_tiny_muq(path, fmt=fmt, weight_norm_names=weight_norm_names, seed=seed)


def muq_card(**options):
    return TeacherCard(name="muq_tiny", family="muq", domain="music", sample_rate=24000, frame_rate=25,
                       num_layers=2, width=32, options=options)


@pytest.fixture(scope="module")
def muq_dir(tmp_path_factory):
    return write_muq_dir(tmp_path_factory.mktemp("muq") / "MuQ-tiny")


def test_muq_acceptance(muq_dir):
    teacher = muq.MuQTeacher(muq_card(), checkpoint=muq_dir)
    assert not any(p.requires_grad for p in teacher.model.parameters())
    _, frames = check_acceptance(teacher, [1, 2], 32)
    assert frames.tolist() == [25, 775]


def test_muq_chunking_keeps_frames(muq_dir):
    """With context covering the whole input, chunked frames equal the unchunked run exactly."""
    wavs, lengths = noise_batch([7.3])
    whole = muq.MuQTeacher(muq_card(max_chunk_seconds=100), checkpoint=muq_dir)
    chunked = muq.MuQTeacher(muq_card(max_chunk_seconds=2, chunk_context_seconds=10), checkpoint=muq_dir)
    (a,), na = whole.extract(wavs, lengths, [2])
    (b,), nb = chunked.extract(wavs, lengths, [2])
    assert na.tolist() == nb.tolist() == [183]  # ceil((7.3 * 24000 // 240) / 4)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert muq.chunk_spans(7008 * 24, 183, 960, 50, 5) == [
        (0, 55 * 960, 0, 50), (45 * 960, 105 * 960, 50, 100), (95 * 960, 155 * 960, 100, 150),
        (145 * 960, 7008 * 24, 150, 183)]


def test_muq_odd_lengths_and_layers(muq_dir):
    """Frame counts follow the resample + mel + stride formula for awkward lengths (down to an
    input too short for one frame); layers are distinct LayerNorm-ed block outputs."""
    teacher = muq.MuQTeacher(muq_card(), checkpoint=muq_dir)
    wavs, lengths = noise_batch([12345 / SR, 16001 / SR, 700 / SR, 100 / SR])
    (l1, l2), frames = teacher.extract(wavs, lengths, [1, 2])
    expect = [-(-((-(-n * 3 // 2)) // 240) // 4) for n in lengths.tolist()]
    assert frames.tolist() == expect == [20, 25, 1, 0]
    assert l2[0, :20].mean(-1).abs().max() < 1e-4
    assert not torch.allclose(l1[0, :20], l2[0, :20], atol=1e-2)
    assert l2[3].abs().sum() == 0  # the zero-frame utterance is all padding


def test_muq_formats_and_ffn(tmp_path, muq_dir):
    """pytorch_model.bin and parametrization-named weight norm load to the same model."""
    other = write_muq_dir(tmp_path / "bin", fmt="bin", weight_norm_names="parametrizations")
    wavs, lengths = noise_batch([1.5])
    (a,), _ = muq.MuQTeacher(muq_card(), checkpoint=muq_dir).extract(wavs, lengths, [2])
    (b,), _ = muq.MuQTeacher(muq_card(), checkpoint=other).extract(wavs, lengths, [2])
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    card = muq_card()
    card.layer_tensor = "ffn"
    teacher = muq.MuQTeacher(card, checkpoint=muq_dir)
    (ffn,), frames = teacher.extract(wavs, lengths, [2])
    mel = teacher.frontend(torchaudio.functional.resample(wavs[0], 16000, 24000))
    hidden = teacher.model.conformer(teacher.model.conv(mel[None]), output_hidden_states=True).hidden_states
    blocks = teacher.model(mel[None], [1, 2], "block")  # hooks give transformers' hidden_states[k]
    torch.testing.assert_close(blocks[1], hidden[1], atol=0, rtol=0)
    torch.testing.assert_close(blocks[2], hidden[2], atol=0, rtol=0)
    layer = teacher.model.conformer.layers[1]
    x = hidden[1]
    x = x + 0.5 * layer.ffn1(layer.ffn1_layer_norm(x))
    x = x + layer.self_attn(layer.self_attn_layer_norm(x),
                            relative_position_embeddings=teacher.model.conformer.embed_positions(x))[0]
    x = x + layer.conv_module(x)
    torch.testing.assert_close(ffn[0], layer.ffn2(layer.ffn2_layer_norm(x))[0], atol=1e-5, rtol=1e-5)


def test_muq_bad_checkpoints(tmp_path):
    from safetensors.torch import load_file, save_file

    d = write_muq_dir(tmp_path / "extra")
    state = load_file(str(d / "model.safetensors"))
    state["model.head.weight"] = torch.zeros(3)
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(TeacherError, match="does not know.*model.head.weight"):
        muq.MuQTeacher(muq_card(), checkpoint=d)
    d = write_muq_dir(tmp_path / "nostat")
    cfg = json.loads((d / "config.json").read_text())
    del cfg["stat"]["melspec_2048_std"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TeacherError, match="melspec_2048_std"):
        muq.MuQTeacher(muq_card(), checkpoint=d)
    with pytest.raises(TeacherError, match="does not exist"):
        muq.MuQTeacher(muq_card(), checkpoint=tmp_path / "nowhere")


def test_muq_manifest_meta_load():
    """The full-size MuQ-large checkpoint keys (manifest) fill the inference module exactly, in
    either weight-norm naming."""
    manifest = read_manifest("muq")
    arch = muq.MuQArch.from_config(manifest["config"], "manifest")
    with torch.device("meta"):
        model = muq.MuQEncoder(arch)
    for rename in (False, True):
        meta = meta_state_from_manifest(manifest)
        if rename:
            meta = {k.replace(".parametrizations.weight.original0", ".weight_g")
                    .replace(".parametrizations.weight.original1", ".weight_v"): v for k, v in meta.items()}
        load_strict(model, muq.encoder_state_from_checkpoint(meta, model, "manifest"), "manifest", assign=True)
    assert len(model.conformer.layers) == 12
    assert model.conformer.layers[0].ffn1.intermediate_dense.weight.shape == (4096, 1024)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(320.6e6, rel=0.02)


def test_muq_through_registry(tmp_path, muq_dir):
    from usad2.teachers.registry import build_teacher

    (tmp_path / "muq_tiny.yaml").write_text(
        "name: muq_tiny\nfamily: muq\ndomain: music\nsample_rate: 24000\nframe_rate: 25\n"
        "num_layers: 2\nwidth: 32\n")
    teacher = build_teacher("muq_tiny", card_dirs=[str(tmp_path)], checkpoint=muq_dir)
    assert isinstance(teacher, muq.MuQTeacher)
    outs, frames = teacher.extract(*noise_batch([2.0]), [1])
    assert frames.tolist() == [50] and outs[0].shape == (1, 50, 32)


def test_shipped_cards_match_families():
    from usad2.teachers.registry import load_card

    a, m = load_card("atst_frame"), load_card("muq")
    assert (a.family, a.sample_rate, float(a.frame_rate), a.num_layers, a.width) == ("atst_frame", 16000, 25, 12, 768)
    assert (m.family, m.sample_rate, float(m.frame_rate), m.num_layers, m.width) == ("muq", 24000, 25, 12, 1024)
    assert a.frame_offset == pytest.approx(1.5 * 160 / SR) and m.frame_offset == 0.0
