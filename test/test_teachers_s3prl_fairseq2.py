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
