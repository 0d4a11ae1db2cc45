"""Tiny random checkpoints of the paper-teacher families, in their official formats, and cards to match.

Tests (and anyone checking a set-up without the real multi-gigabyte models) need checkpoints
that take the same loading code as the real ones: a WavLM `save_pretrained` dir, an ATST-Frame
Lightning `.ckpt`, a MuQ hub dir, a Whisper HF dir or openai-whisper `.pt`, and an AF3 sound tower
in its release or transformers-5 layout. Each `write_tiny_*` builds a small random instance of
the real architecture (seeded: the same call writes the same weights) and saves it the way the
upstream project does. `write_tiny_cards` writes copies of the package cards whose layer count,
width and options fit these checkpoints, so the registry and the recipe can use them by name.

Only tests and checks import this module; it pulls in transformers and safetensors lazily.
"""
import json
import os

import torch
import yaml

SR = 16000
TINY_LAYERS = 2
TINY_WIDTH = 32
TINY_HEADS = 2

# The five paper teachers: card name -> the writer of a checkpoint at `<root>/<name>`.
PAPER_TEACHERS = ("wavlm_base_plus", "atst_frame", "muq", "whisper_large_v3", "af_whisper")


def wavlm_config(layers=TINY_LAYERS, width=TINY_WIDTH):
    """WavLMConfig keyword arguments of a tiny WavLM (7 conv layers as the real one, 16 channels)."""
    return dict(hidden_size=width, num_hidden_layers=layers, num_attention_heads=TINY_HEADS,
                intermediate_size=2 * width, conv_dim=[16] * 7, num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2, num_buckets=16, max_bucket_distance=64)


def write_tiny_wavlm(path, layers=TINY_LAYERS, width=TINY_WIDTH, seed=0):
    """A tiny WavLMModel saved with save_pretrained (config.json + model.safetensors) plus the
    preprocessor_config.json of WavLM Base+ (do_normalize false); returns the dir."""
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(seed)
    os.makedirs(path, exist_ok=True)
    WavLMModel(WavLMConfig(**wavlm_config(layers, width))).save_pretrained(path)
    with open(os.path.join(path, "preprocessor_config.json"), "w", encoding="utf-8") as f:
        json.dump({"do_normalize": False, "sampling_rate": SR}, f)
    return path


def atst_config(layers=TINY_LAYERS, width=TINY_WIDTH):
    """FrameAST keyword arguments of a tiny ATST-Frame (250 positions = 10 s chunks, as the real one)."""
    return dict(dim=width, depth=layers, num_heads=TINY_HEADS, max_patches=250)


def byol_head(prefix, inp, hidden=64, out=16):
    """The official build_mlp(2, inp, hidden, out) tensors (Linear no bias, BatchNorm1d, Linear)."""
    return {f"{prefix}.0.weight": torch.randn(hidden, inp), f"{prefix}.1.weight": torch.ones(hidden),
            f"{prefix}.1.bias": torch.zeros(hidden), f"{prefix}.1.running_mean": torch.zeros(hidden),
            f"{prefix}.1.running_var": torch.ones(hidden), f"{prefix}.1.num_batches_tracked": torch.tensor(0),
            f"{prefix}.3.weight": torch.randn(out, hidden)}


def write_tiny_atst(path, layers=TINY_LAYERS, width=TINY_WIDTH, seed=0):
    """A tiny ATST-Frame in the official Lightning layout (student + EMA teacher encoders, BYOL
    projector/predictor heads, hyper_parameters); returns the .ckpt path.

    The positional table gets a visible random scale so that chunk positions matter in tests.
    Cards for it need `options: {num_heads: 2}` (the head count is not in the state dict).
    """
    from usad2.teachers.families import atst_frame

    torch.manual_seed(seed)
    state = {}
    for who in ("student", "teacher"):
        enc = atst_frame.FrameAST(**atst_config(layers, width))
        with torch.no_grad():
            enc.pos_embed.normal_(0, 0.5)
        state.update({f"model.{who}.encoder.{k}": v for k, v in enc.state_dict().items()})
        state.update(byol_head(f"model.{who}.projector", width))
    state.update(byol_head("model.student.predictor", 16))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "1.9.0", "state_dict": state,
                "hyper_parameters": {"arch": "base", "learning_rate": 5e-4, "symmetric": True, "nprompt": 0}},
               path)
    return path


def muq_config(layers=TINY_LAYERS, width=TINY_WIDTH):
    """A tiny MuQ config.json with the official field names (MuQConfig + w2v2_config)."""
    return {"label_rate": 25, "num_codebooks": 1, "codebook_dim": 16, "codebook_size": 64,
            "features": ["melspec_2048"], "hop_length": 240, "n_mels": 128, "conv_dim": 8, "encoder_dim": width,
            "encoder_depth": layers, "mask_hop": 0.4, "mask_prob": 0.6, "is_flash": False,
            "stat": {"melspec_2048_cnt": 1, "melspec_2048_mean": 6.768444971712967,
                     "melspec_2048_std": 18.417922652295623},
            "w2v2_config": {"hidden_act": "swish", "num_attention_heads": TINY_HEADS, "intermediate_size": 2 * width,
                            "conv_depthwise_kernel_size": 5, "position_embeddings_type": "rotary",
                            "num_conv_pos_embeddings": 8, "num_conv_pos_embedding_groups": 2,
                            "model_type": "wav2vec2-conformer", "transformers_version": "4.19.0.dev0"},
            "use_rvq_target": False, "rvq_ckpt_path": None, "recon_loss_ratio": None}


def write_tiny_muq(path, layers=TINY_LAYERS, width=TINY_WIDTH, fmt="safetensors", weight_norm_names="g_v",
                   seed=0):
    """A tiny MuQ hub dir: config.json + weights keyed `model.*`, with the training-only heads
    (linear, cls_token, quantizer) the loader must ignore; returns the dir.

    fmt: "safetensors" (model.safetensors) or "bin" (pytorch_model.bin); weight_norm_names:
    "g_v" (weight_g/weight_v, as the released file) or "parametrizations" (torch's new names).
    """
    from usad2.teachers.families import muq

    torch.manual_seed(seed)
    cfg = muq_config(layers, width)
    model = muq.MuQEncoder(muq.MuQArch.from_config(cfg, "tiny"))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    state = {}
    for k, v in model.state_dict().items():
        if weight_norm_names == "g_v" and ".parametrizations.weight.original" in k:
            k = k.replace(".parametrizations.weight.original0", ".weight_g").replace(
                ".parametrizations.weight.original1", ".weight_v")
        state["model." + k] = v.clone().contiguous()
    state.update({"model.linear.weight": torch.randn(64, width), "model.linear.bias": torch.zeros(64),
                  "model.cls_token": torch.randn(width),
                  "model.quantizer_melspec_2048.random_projection": torch.randn(512, 16),
                  "model.quantizer_melspec_2048.codebook": torch.randn(64, 16)})
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, os.path.join(path, "model.safetensors"))
    else:
        torch.save(state, os.path.join(path, "pytorch_model.bin"))
    return path


def whisper_config(layers=TINY_LAYERS, width=TINY_WIDTH):
    """WhisperConfig keyword arguments: large-v3's front end (128 mels, 1500 positions), tiny elsewhere."""
    return dict(d_model=width, encoder_layers=layers, encoder_attention_heads=TINY_HEADS, encoder_ffn_dim=4 * width,
                decoder_layers=1, decoder_attention_heads=TINY_HEADS, decoder_ffn_dim=4 * width, num_mel_bins=128,
                max_source_positions=1500, max_target_positions=32, vocab_size=100, pad_token_id=0,
                bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, begin_suppress_tokens=None,
                suppress_tokens=None)


def write_tiny_whisper(path, fmt="hf", layers=TINY_LAYERS, width=TINY_WIDTH, seed=0):
    """A tiny Whisper: fmt "hf" saves WhisperForConditionalGeneration into dir `path` (returned);
    fmt "openai" writes the openai-whisper `{"dims", "model_state_dict"}` file `path/tiny.pt`
    (returned). The same seed gives the same weights in both formats."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from usad2.teachers.families import make_manifests, whisper

    if fmt not in ("hf", "openai"):
        raise ValueError(f"fmt must be 'hf' or 'openai', got {fmt!r}")
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(WhisperConfig(**whisper_config(layers, width)))
    os.makedirs(path, exist_ok=True)
    if fmt == "hf":
        model.save_pretrained(path)
        return path
    full = model.state_dict()
    state = whisper.hf_to_openai({k[len("model.encoder."):]: v for k, v in full.items()
                                  if k.startswith("model.encoder.")})
    state.update({make_manifests.decoder_openai_name(k): v for k, v in full.items()
                  if k.startswith("model.decoder.")})
    dims = dict(n_mels=128, n_audio_ctx=1500, n_audio_state=width, n_audio_head=TINY_HEADS, n_audio_layer=layers,
                n_vocab=100, n_text_ctx=32, n_text_state=width, n_text_head=TINY_HEADS, n_text_layer=1)
    out = os.path.join(path, "tiny.pt")
    torch.save({"dims": dims, "model_state_dict": state}, out)
    return out


def af_whisper_config(layers=TINY_LAYERS, width=TINY_WIDTH):
    """Qwen2AudioEncoderConfig keyword arguments of a tiny AF3 sound tower (30 s windows, 128 mels)."""
    return dict(d_model=width, encoder_layers=layers, encoder_attention_heads=TINY_HEADS, encoder_ffn_dim=2 * width,
                num_mel_bins=128, max_source_positions=1500)


def write_tiny_af_whisper(path, layout="release", layers=TINY_LAYERS, width=TINY_WIDTH, seed=0):
    """A tiny AF3 sound tower; returns the dir `path`.

    layout "release": `path/sound_tower/` (config.json + model.safetensors, unprefixed keys), as
    nvidia/audio-flamingo-3; "hf": the transformers-5 conversion, `audio_tower.*` keys plus a
    projector key the loader must ignore, config.json with `audio_config`. Same seed, same weights.
    """
    from safetensors.torch import save_file
    from transformers import Qwen2AudioEncoderConfig
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    if layout not in ("release", "hf"):
        raise ValueError(f"layout must be 'release' or 'hf', got {layout!r}")
    torch.manual_seed(seed)
    config = af_whisper_config(layers, width)
    encoder = Qwen2AudioEncoder(Qwen2AudioEncoderConfig(**config))
    os.makedirs(path, exist_ok=True)
    if layout == "release":
        encoder.save_pretrained(os.path.join(path, "sound_tower"))
        return path
    converted = {"audio_tower." + k: v.contiguous() for k, v in encoder.state_dict().items()}
    converted["multi_modal_projector.linear_1.weight"] = torch.zeros(8, width)
    save_file(converted, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"model_type": "audioflamingo3", "audio_config": config}, f)
    return path


def write_tiny_paper_teachers(root, layers=4, width=TINY_WIDTH):
    """All five paper teachers under `root`, in their default official formats.

    Returns {card name: checkpoint path} (what `--teacher_checkpoints` takes). Four layers by
    default so that the K = 4 sparse mapping applies to the stage-1 teachers as to the real ones.
    """
    root = os.fspath(root)
    return {
        "wavlm_base_plus": write_tiny_wavlm(os.path.join(root, "wavlm_base_plus"), layers, width),
        "atst_frame": write_tiny_atst(os.path.join(root, "atst_frame", "atstframe_tiny.ckpt"), layers, width),
        "muq": write_tiny_muq(os.path.join(root, "muq"), layers, width),
        "whisper_large_v3": write_tiny_whisper(os.path.join(root, "whisper_large_v3"), "hf", layers, width),
        "af_whisper": write_tiny_af_whisper(os.path.join(root, "af_whisper"), "release", layers, width),
    }


def tiny_card_dict(name, layers=4, width=TINY_WIDTH):
    """The package card `name` as a dict, resized to a tiny checkpoint of `layers` x `width`.

    Stage-2 cards that distil their last layer keep doing so (distill_layers [layers]); ATST-Frame
    gets its head count as an option. Everything else (rates, offsets, domain) stays the real one.
    """
    from usad2.teachers.registry import PACKAGE_CARD_DIR, read_card

    card = read_card(os.path.join(PACKAGE_CARD_DIR, f"{name}.yaml")).to_dict()
    card.update(num_layers=layers, width=width)
    if card.get("distill_layers"):
        card["distill_layers"] = [layers]
    if card["family"] == "atst_frame":
        card["options"] = dict(card.get("options") or {}, num_heads=TINY_HEADS)
    return card


def write_tiny_cards(card_dir, layers=4, width=TINY_WIDTH, names=PAPER_TEACHERS):
    """Write `<card_dir>/<name>.yaml` for each paper teacher, fitting `write_tiny_paper_teachers`."""
    os.makedirs(card_dir, exist_ok=True)
    for name in names:
        with open(os.path.join(card_dir, f"{name}.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(tiny_card_dict(name, layers, width), f, sort_keys=False)
    return card_dir
