"""Write the committed parameter manifests of the real full-size checkpoints of these families.

`python -m usad2.teachers.families.make_manifests [OUT_DIR]` rebuilds them (no download, no
memory: every model is instantiated on the meta device). Sources of each manifest:
- wavlm.json: microsoft/wavlm-base-plus config.json values (below) in transformers'
  WavLMModel; the positional conv's weight norm is named as the hub file stores it
  (`weight_g`/`weight_v`, saved before torch's parametrizations existed).
- whisper_hf.json: openai/whisper-large-v3 config (d_model 1280, 32+32 layers, 20 heads,
  128 mels, vocabulary 51866) in WhisperForConditionalGeneration; `proj_out.weight` is tied to
  the token embedding and not saved by save_pretrained, so it is left out.
- whisper_openai.json: the openai-whisper large-v3.pt `model_state_dict` from openai/whisper's
  model.py (AudioEncoder: conv1, conv2, positional_embedding buffer, blocks.N.{attn.query/key
  (no bias)/value/out, attn_ln, mlp.0, mlp.2, mlp_ln}, ln_post; TextDecoder: token_embedding,
  positional_embedding (448), blocks with cross_attn, ln) with dims n_mels 128, n_audio_ctx
  1500, n_audio_state 1280, n_audio_head 20, n_audio_layer 32, n_vocab 51866, n_text_ctx 448,
  n_text_state 1280, n_text_head 20, n_text_layer 32.
- af_whisper.json: the sound_tower/model.safetensors of nvidia/audio-flamingo-3, whose keys
  transformers' convert_audioflamingo3_to_hf.py loads unchanged (under `audio_tower.`) into
  AudioFlamingo3Encoder, a Qwen2AudioEncoder with Whisper-large-v3 dimensions (defaults of
  Qwen2AudioEncoderConfig / AudioFlamingo3EncoderConfig: 128 mels, 32 layers, 1280, 20 heads,
  FFN 5120, 1500 positions).
- fairseq2_wav2vec2_base.json: fairseq2 0.6's own wav2vec2 `base` architecture (its registered
  arch config) built by its factory on meta: the key names of a fairseq2-format checkpoint
  (`{"model": state}`); original fairseq files are converted to these names by fairseq2.
- fairseq2_w2vbert_600m.json: fairseq2 0.6's own w2vbert `600m` architecture (24 conformer
  layers, 1024 wide, 80-bin fbank stacked by 2; the w2v-BERT paper's XL size) built by its
  factory on meta: the key names of a fairseq2-format W2VBertModel checkpoint (`w2v2_model.*`
  plus the BERT head `final_bert_proj`).
"""
import json
import os
import sys

import torch

WAVLM_BASE_PLUS = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    conv_dim=[512] * 7, conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False, num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16, num_buckets=320, max_bucket_distance=800, mask_time_prob=0.05,
    vocab_size=32)
WHISPER_LARGE_V3 = dict(
    d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20, decoder_attention_heads=20,
    encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128, max_source_positions=1500,
    max_target_positions=448, vocab_size=51866)


def shapes(module):
    """{state-dict key: shape list} of a module (meta tensors)."""
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def wavlm_manifest():
    from transformers import WavLMConfig, WavLMModel

    with torch.device("meta"):
        params = shapes(WavLMModel(WavLMConfig(**WAVLM_BASE_PLUS)))
    legacy = {}
    for k, v in params.items():
        k = k.replace("conv.parametrizations.weight.original0", "conv.weight_g")
        legacy[k.replace("conv.parametrizations.weight.original1", "conv.weight_v")] = v
    return {"source": "microsoft/wavlm-base-plus (transformers WavLMModel, config in make_manifests.py)",
            "format": "hf", "params": legacy}


def whisper_hf_manifest():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    with torch.device("meta"):
        params = shapes(WhisperForConditionalGeneration(WhisperConfig(**WHISPER_LARGE_V3)))
    params.pop("proj_out.weight")
    return {"source": "openai/whisper-large-v3 (transformers WhisperForConditionalGeneration)",
            "format": "hf", "params": params}


def decoder_openai_name(hf_key):
    """HF `model.decoder.*` key -> openai-whisper `decoder.*` key."""
    from usad2.teachers.families.whisper import OPENAI_BLOCK_MAP

    block = {v: k for k, v in OPENAI_BLOCK_MAP.items()}
    block.update({"encoder_attn.q_proj": "cross_attn.query", "encoder_attn.k_proj": "cross_attn.key",
                  "encoder_attn.v_proj": "cross_attn.value", "encoder_attn.out_proj": "cross_attn.out",
                  "encoder_attn_layer_norm": "cross_attn_ln"})
    parts = hf_key[len("model.decoder."):].split(".")
    if parts[0] == "layers":
        return f"decoder.blocks.{parts[1]}.{block['.'.join(parts[2:-1])]}.{parts[-1]}"
    top = {"embed_tokens.weight": "decoder.token_embedding.weight",
           "embed_positions.weight": "decoder.positional_embedding",
           "layer_norm.weight": "decoder.ln.weight", "layer_norm.bias": "decoder.ln.bias"}
    return top[".".join(parts)]


def whisper_openai_manifest(hf_params):
    from usad2.teachers.families.whisper import hf_to_openai

    enc = {k[len("model.encoder."):]: v for k, v in hf_params.items() if k.startswith("model.encoder.")}
    params = hf_to_openai(enc)
    params.update({decoder_openai_name(k): v for k, v in hf_params.items() if k.startswith("model.decoder.")})
    dims = dict(n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20, n_audio_layer=32,
                n_vocab=51866, n_text_ctx=448, n_text_state=1280, n_text_head=20, n_text_layer=32)
    return {"source": "openai-whisper large-v3.pt (openai/whisper model.py names, large-v3 dims)",
            "format": "openai", "dims": dims, "params": params}


def af_whisper_manifest():
    from transformers import Qwen2AudioEncoderConfig
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    with torch.device("meta"):
        params = shapes(Qwen2AudioEncoder(Qwen2AudioEncoderConfig()))
    return {"source": "nvidia/audio-flamingo-3 sound_tower/model.safetensors (AudioFlamingo3Encoder = "
                      "Qwen2AudioEncoder keys, Whisper-large-v3 dimensions)",
            "format": "af3_sound_tower", "params": params}


def fairseq2_wav2vec2_manifest():
    from fairseq2.models.wav2vec2 import create_wav2vec2_model, get_wav2vec2_model_hub

    with torch.device("meta"):
        params = shapes(create_wav2vec2_model(get_wav2vec2_model_hub().get_arch_config("base")))
    return {"source": "fairseq2 0.6 wav2vec2 arch 'base' (fairseq2 checkpoint key names)",
            "format": "fairseq2", "arch": "base", "params": params}


def fairseq2_w2vbert_manifest(arch="600m"):
    from fairseq2.models.w2vbert import create_w2vbert_model, get_w2vbert_model_hub

    with torch.device("meta"):
        params = shapes(create_w2vbert_model(get_w2vbert_model_hub().get_arch_config(arch)))
    return {"source": f"fairseq2 0.6 w2vbert arch '{arch}' (fairseq2 checkpoint key names)",
            "format": "fairseq2", "model_family": "w2vbert", "arch": arch, "params": params}


def dump(manifest, path):
    """One parameter per line: diffable and compact."""
    head = {k: v for k, v in manifest.items() if k != "params"}
    lines = [json.dumps(head)[:-1] + ', "params": {']
    items = list(manifest["params"].items())
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}{',' if i < len(items) - 1 else ''}" for i, (k, v) in enumerate(items)]
    lines.append("}}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(out_dir=None):
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "manifests")
    hf = whisper_hf_manifest()
    for name, manifest in (("wavlm", wavlm_manifest()), ("whisper_hf", hf),
                           ("whisper_openai", whisper_openai_manifest(hf["params"])),
                           ("af_whisper", af_whisper_manifest()),
                           ("fairseq2_wav2vec2_base", fairseq2_wav2vec2_manifest()),
                           ("fairseq2_w2vbert_600m", fairseq2_w2vbert_manifest("600m"))):
        dump(manifest, os.path.join(out_dir, name + ".json"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
