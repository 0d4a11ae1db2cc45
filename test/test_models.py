"""Student encoder, presets and heads (issue 3 items 1-2): shapes, lengths, padding, params."""
import dataclasses
import subprocess
import sys

import pytest
import torch

from usad2.errors import ConfigError
from usad2.models.encoder import EncoderConfig, StudentEncoder, relative_sinusoids
from usad2.models.heads import PredictionHead, build_heads, head_key, parse_head_key
from usad2.models.presets import PRESETS, count_parameters, get_preset
from usad2.models.wave_encoder import Usad2Model

# the paper's sizes (docs/method.md#1-student-encoder); counts must fall within 5 % of the range
PAPER_PARAMS = {"small": (24e6, 25e6), "base": (94e6, 97e6), "large": (330e6, 336e6),
                "xlarge": (695e6, 695e6), "xxlarge": (1036e6, 1036e6)}


def shrunk(name):
    """The preset's structure (strides, rate) with tiny dims, so every preset runs fast."""
    return get_preset(name, d_model=32, num_layers=2, num_heads=4, pos_conv_groups=4)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_parameter_counts_match_paper(name):
    lo, hi = PAPER_PARAMS[name]
    n = count_parameters(get_preset(name))
    assert 0.95 * lo <= n <= 1.05 * hi, n


def test_exact_parameter_count_of_base():
    # 98,850,496 = the paper's 98.9 M; guards against silent architecture drift
    assert count_parameters(get_preset("base")) == 98_850_496


def test_mini_is_the_wide_cheap_demo_student():
    # the demo recipe's student: tiny's depth, 3x its width, half its conv channels
    mini, tiny = get_preset("mini"), get_preset("tiny")
    assert (mini.num_layers, mini.d_model, mini.conv_channels) == (tiny.num_layers, 3 * tiny.d_model, tiny.conv_channels // 2)
    assert count_parameters(mini) == 2_555_744
    assert get_preset("mini_f1").freq_stride == 1


def test_mini6_is_mini_two_layers_deeper():
    mini, mini6 = get_preset("mini"), get_preset("mini6")
    assert dataclasses.replace(mini, num_layers=6) == mini6
    # two more transformer layers of 482,112 parameters each (attention, FFN, norms), nothing else
    assert count_parameters(mini6) - count_parameters(mini) == 964_224


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shapes_and_lengths_every_preset(name):
    torch.manual_seed(0)
    cfg = shrunk(name)
    model = StudentEncoder(cfg).eval()
    lengths = torch.tensor([203, 150, 9])
    feats = torch.randn(3, 203, 128)
    out = model(feats, lengths)
    stride = PRESETS[name].time_stride
    expected = torch.tensor([-(-n // stride) for n in lengths.tolist()])  # ceil(T / stride)
    assert torch.equal(out.lengths, expected)
    assert torch.equal(cfg.output_length(lengths), expected)
    assert [cfg.output_length(n) for n in (203, 150, 9)] == expected.tolist()
    t = int(expected.max())
    assert len(out.hidden_states) == cfg.num_layers + 1
    for h in out.hidden_states:
        assert h.shape == (3, t, 32)
    assert torch.equal(out.padding_mask, torch.arange(t)[None] >= expected[:, None])
    # padded frames are exact zeros in every output
    for h in out.hidden_states:
        assert h[out.padding_mask].abs().max() == 0


def test_25hz_halves_frames():
    torch.manual_seed(0)
    feats = torch.randn(1, 400, 128)
    out50 = StudentEncoder(shrunk("large")).eval()(feats)
    out25 = StudentEncoder(shrunk("xlarge")).eval()(feats)
    assert out50.hidden_states[-1].shape[1] == 200
    assert out25.hidden_states[-1].shape[1] == 100


@pytest.mark.parametrize("stride", [2, 4])
def test_padding_does_not_change_valid_outputs(stride):
    torch.manual_seed(1)
    cfg = get_preset("tiny", time_stride=stride, freq_stride=stride)
    model = StudentEncoder(cfg).eval()
    feats = torch.randn(3, 131, 128)
    lengths = torch.tensor([131, 77, 40])
    batch = model(feats, lengths)
    for i, n in enumerate(lengths.tolist()):
        # garbage (not zeros) beyond the length must not matter either
        alone = model(feats[i:i + 1, :n], lengths[i:i + 1])
        t = int(alone.lengths[0])
        assert int(batch.lengths[i]) == t
        for a, b in zip(batch.hidden_states, alone.hidden_states):
            torch.testing.assert_close(a[i, :t], b[0], atol=1e-5, rtol=0)


def test_relative_sinusoids_values():
    emb = relative_sinusoids(3, 8)  # offsets 2, 1, 0, -1, -2
    assert emb.shape == (5, 8)
    torch.testing.assert_close(emb[2], torch.tensor([0.0, 1.0] * 4))  # offset 0: sin 0, cos 0
    torch.testing.assert_close(emb[0, 0], torch.sin(torch.tensor(2.0)))  # offset +2, fastest frequency
    torch.testing.assert_close(emb[4, :2], torch.tensor([torch.sin(torch.tensor(-2.0)), torch.cos(torch.tensor(-2.0))]))


def test_relative_attention_matches_naive_formula():
    """score(i, j) = [(q_i + u) . k_j + (q_i + v) . W_pos e(i - j)] / sqrt(d_head), per head."""
    torch.manual_seed(0)
    cfg = get_preset("tiny", num_layers=1, num_heads=2, dropout=0.0, attention_dropout=0.0)
    attn = StudentEncoder(cfg).layers[0].attn.eval()
    t, d, h = 5, 64, 2
    dk = d // h
    x = torch.randn(1, t, d)
    mask = torch.tensor([[False, False, False, False, True]])
    emb = relative_sinusoids(t, d)
    out = attn(x, emb, mask)
    q = attn.q_proj(x)[0].view(t, h, dk)
    k = attn.k_proj(x)[0].view(t, h, dk)
    v = attn.v_proj(x)[0].view(t, h, dk)
    ref = torch.zeros(t, h, dk)
    for head in range(h):
        scores = torch.empty(t, t)
        for i in range(t):
            for j in range(t):
                p = attn.pos_proj(emb[(t - 1) - (i - j)]).view(h, dk)[head]
                scores[i, j] = ((q[i, head] + attn.pos_bias_u[head]) @ k[j, head]
                                + (q[i, head] + attn.pos_bias_v[head]) @ p) / dk ** 0.5
        scores[:, 4] = float("-inf")
        ref[:, head] = torch.softmax(scores, -1) @ v[:, head]
    torch.testing.assert_close(out[0], attn.out_proj(ref.reshape(t, d)), atol=1e-5, rtol=1e-5)


def test_relative_attention_gradients_match_naive_formula():
    """The strided relative-position read-out back-propagates like the naive per-offset scores."""
    torch.manual_seed(1)
    cfg = get_preset("tiny", num_layers=1, num_heads=2, dropout=0.0, attention_dropout=0.0)
    attn = StudentEncoder(cfg).layers[0].attn.eval()
    b, t, d, h = 2, 6, 64, 2
    dk = d // h
    x = torch.randn(b, t, d, requires_grad=True)
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[1, 4:] = True
    emb = relative_sinusoids(t, d)
    params = [x, attn.pos_bias_u, attn.pos_bias_v, attn.pos_proj.weight, attn.q_proj.weight]
    got = torch.autograd.grad(attn(x, emb, mask).square().sum(), params)
    q = attn.q_proj(x).view(b, t, h, dk)
    k = attn.k_proj(x).view(b, t, h, dk)
    v = attn.v_proj(x).view(b, t, h, dk)
    offsets = (t - 1) - (torch.arange(t)[:, None] - torch.arange(t)[None, :])  # row of emb for (i, j)
    pos = attn.pos_proj(emb)[offsets].view(t, t, h, dk)
    scores = (torch.einsum("bihd,bjhd->bhij", q + attn.pos_bias_u, k)
              + torch.einsum("bihd,ijhd->bhij", q + attn.pos_bias_v, pos)) / dk ** 0.5
    scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
    ref = attn.out_proj(torch.einsum("bhij,bjhd->bihd", torch.softmax(scores, -1), v).reshape(b, t, d))
    want = torch.autograd.grad(ref.square().sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_bf16_cpu_attention_takes_the_plain_path_and_matches_the_fused_kernel(monkeypatch):
    """Under CPU bf16 autocast the attention runs as plain matmul-softmax-matmul (faster there than
    SDPA's unfused float-mask path); it computes the same function, forward and backward, within
    bf16 rounding, and its attention-weight dropout is active in training only."""
    from usad2.models import encoder as enc

    torch.manual_seed(2)
    cfg = get_preset("tiny", num_layers=1, num_heads=4, dropout=0.0, attention_dropout=0.1)
    attn = StudentEncoder(cfg).layers[0].attn.eval()
    b, t, d = 3, 40, 64
    x = torch.randn(b, t, d)
    mask = torch.zeros(b, t, dtype=torch.bool)
    mask[1, 30:] = True
    mask[2, 1:] = True  # one real frame: its row must stay finite
    emb = relative_sinusoids(t, d)
    assert not enc._plain_attention_is_faster(x)
    with torch.autocast("cpu", torch.bfloat16):
        assert enc._plain_attention_is_faster(x)
    outputs, grads = {}, {}
    for path in ("plain", "fused"):
        xg = x.clone().requires_grad_(True)
        monkeypatch.setattr(enc, "_plain_attention_is_faster", lambda _x, plain=(path == "plain"): plain)
        with torch.autocast("cpu", torch.bfloat16):
            out = attn(xg, emb, mask)
        grads[path] = torch.autograd.grad(out.float().square().sum(), [xg, attn.pos_bias_u])
        outputs[path] = out.float()
    monkeypatch.undo()
    assert torch.isfinite(outputs["plain"]).all()
    torch.testing.assert_close(outputs["plain"], outputs["fused"], atol=3e-2, rtol=3e-2)
    for g_plain, g_fused in zip(grads["plain"], grads["fused"]):
        assert torch.nn.functional.cosine_similarity(g_plain.flatten(), g_fused.flatten(), dim=0) > 0.999
    attn.train()
    with torch.autocast("cpu", torch.bfloat16):
        torch.manual_seed(0)
        first = attn(x, emb, mask).float()
        torch.manual_seed(1)
        second = attn(x, emb, mask).float()
    assert torch.isfinite(first).all() and not torch.equal(first, second)
    assert (first - outputs["plain"]).abs().mean() > 0.01  # dropout acts in training


def test_positional_conv_matches_its_conv1d_definition():
    """The positional encoder runs its grouped Conv1d weights as a channels-last Conv2d (faster on
    the CPU); output and weight gradients equal the plain Conv1d computation."""
    import torch.nn.functional as F

    torch.manual_seed(4)
    pos = StudentEncoder(get_preset("tiny", num_layers=1)).pos_conv
    x = torch.randn(2, 37, 64)
    mask = torch.zeros(2, 37, dtype=torch.bool)
    mask[1, 25:] = True

    def reference(x):
        y = x
        for conv, k in zip(pos.convs, pos.kernels):
            y = conv(F.pad(y.masked_fill(mask[..., None], 0.0).transpose(1, 2), ((k - 1) // 2, k // 2))).transpose(1, 2)
            y = F.gelu(F.layer_norm(y, y.shape[-1:], eps=pos.eps))
        return (x + y).masked_fill(mask[..., None], 0.0)

    weights = [c.weight for c in pos.convs]
    got = pos(x, mask)
    want = reference(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for g, w in zip(torch.autograd.grad(got.square().sum(), weights), torch.autograd.grad(want.square().sum(), weights)):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
    assert tuple(weights[0].shape) == (64, 4, pos.kernels[0])  # checkpoints keep Conv1d shapes


def test_layer_structure_and_config_roundtrip():
    cfg = get_preset("xlarge")
    assert cfg.conv_strides == [(2, 2), (2, 2)] and cfg.subsampled_bins == 32
    assert get_preset("small").conv_strides == [(2, 2), (1, 1)] and get_preset("small").subsampled_bins == 64
    assert sum(cfg.pos_conv_kernels) == 95 and cfg.pos_conv_kernels == [19] * 5
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown EncoderConfig keys: bogus"):
        EncoderConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="time_stride must be one of"):
        dataclasses.replace(cfg, time_stride=3)
    with pytest.raises(ConfigError, match="unknown model preset 'huge'"):
        get_preset("huge")


def test_train_mode_dropout_and_layerdrop_run():
    torch.manual_seed(0)
    model = StudentEncoder(get_preset("tiny", layerdrop=0.5)).train()
    out = model(torch.randn(2, 50, 128), torch.tensor([50, 30]))
    out.hidden_states[-1].sum().backward()
    assert model.subsampler.proj.weight.grad is not None


def test_wave_model_rates_and_forward():
    torch.manual_seed(0)
    for stride, rate, down in ((2, 50.0, 320), (4, 25.0, 640)):
        model = Usad2Model(get_preset("tiny", time_stride=stride, freq_stride=stride)).eval()
        assert model.frame_rate == rate and model.downsample_rate == down
        wavs = torch.randn(2, 16000) * 0.1
        out = model(wavs, torch.tensor([16000, 8000]))
        # 1 s -> 98 fbank frames -> ceil(98 / stride)
        assert out.lengths.tolist() == [-(-98 // stride), -(-48 // stride)]


def test_heads():
    heads = build_heads({("wavlm_base_plus", 4): 768, ("atst_frame", 12): 384, ("a.b", 1): 5}, in_dim=64)
    assert list(heads) == ["a_b:L1", "atst_frame:L12", "wavlm_base_plus:L4"]
    head = heads[head_key("wavlm_base_plus", 4)]
    assert isinstance(head, PredictionHead)
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear"]
    assert head(torch.randn(2, 7, 64)).shape == (2, 7, 768)
    assert parse_head_key("wavlm_base_plus:L4") == ("wavlm_base_plus", 4)
    with pytest.raises(ValueError, match="two heads"):
        build_heads({("a.b", 1): 3, ("a_b", 1): 3}, in_dim=4)
    linear = build_heads({("t", 1): 5}, in_dim=8, hidden_dim=0)["t:L1"]
    assert [type(m).__name__ for m in linear] == ["Linear"] and linear.hidden_dim == 0
    assert linear(torch.randn(2, 3, 8)).shape == (2, 3, 5) and sum(p.numel() for p in linear.parameters()) == 45
    with pytest.raises(ValueError, match="0 = linear head"):
        PredictionHead(8, 5, -1)


def test_model_info_cli(repo_dir):
    proc = subprocess.run([sys.executable, "-m", "usad2.bin.model_info", "--preset", "base"],
                          capture_output=True, text=True, cwd=repo_dir, check=True)
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "params: 98850496"
    assert "d_model: 768" in lines and "frame_rate: 50.0" in lines


def test_model_info_of_export(tmp_path):
    from usad2.bin.model_info import model_info
    from usad2.errors import CheckpointError
    from usad2.models.export import save_export

    model = Usad2Model(get_preset("tiny", time_stride=4, freq_stride=4))
    save_export(model, tmp_path / "m.pt")
    lines = model_info(export=str(tmp_path / "m.pt"))
    assert "frame_rate: 25.0" in lines and "downsample_rate: 640" in lines
    assert lines[-1] == f"params: {sum(p.numel() for p in model.parameters())}"
    with pytest.raises(ConfigError, match="exactly one of --preset and --export"):
        model_info()
    torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="x.pt: not a usad2 export"):
        model_info(export=str(tmp_path / "x.pt"))


def test_encoder_file_is_vendorable(repo_dir, tmp_path):
    """encoder.py imports nothing from usad2: a copy of the file alone builds and runs the model."""
    import ast
    import importlib.util
    import shutil

    source = repo_dir / "usad2" / "models" / "encoder.py"
    tree = ast.parse(source.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"dataclasses", "math", "typing", "torch"}, imported
    copy = tmp_path / "vendored_encoder.py"
    shutil.copy(source, copy)
    spec = importlib.util.spec_from_file_location("vendored_encoder", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    theirs = module.StudentEncoder(module.EncoderConfig(**get_preset("tiny").to_dict())).eval()
    ours = StudentEncoder(get_preset("tiny")).eval()
    ours.load_state_dict(theirs.state_dict())
    feats = torch.randn(1, 40, 128)
    assert torch.equal(theirs(feats).hidden_states[-1], ours(feats).hidden_states[-1])


def test_cpu_dropout_zeroes_p_and_keeps_the_mean():
    from usad2.models.encoder import dropout

    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    y = dropout(x, 0.1)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002  # 3 sigma is 0.0009
    assert abs(y.mean().item() - 1.0) < 0.003
    assert torch.allclose(y[kept], torch.full_like(y[kept], 32768 / (32768 - 3277)))
    torch.manual_seed(0)
    assert torch.equal(dropout(x, 0.1), y)  # seeded like F.dropout: same seed, same mask
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0) is x


def test_cpu_dropout_gradient_is_the_mask_and_bf16_keeps_its_dtype():
    from usad2.models.encoder import dropout

    torch.manual_seed(1)
    x = torch.randn(4, 50, 16, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    scale = 32768 / (32768 - 8192)
    assert torch.equal(x.grad, (y != 0).float() * scale)
    xb = torch.randn(3, 7, dtype=torch.bfloat16)
    assert dropout(xb, 0.5).dtype == torch.bfloat16


def test_encoder_dropout_modules_only_act_in_training():
    from usad2.models.presets import get_preset
    from usad2.models.wave_encoder import Usad2Model

    torch.manual_seed(0)
    model = Usad2Model(get_preset("tiny"))
    wave = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 12000])
    model.eval()
    a = model(wave, lengths).hidden_states[-1]
    b = model(wave, lengths).hidden_states[-1]
    assert torch.equal(a, b)
    model.train()
    c = model(wave, lengths).hidden_states[-1]
    assert not torch.allclose(a, c)
