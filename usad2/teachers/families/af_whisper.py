"""Audio Flamingo 3's AF-Whisper sound tower as a teacher: family `af_whisper`.

transformers < 5 has no Audio Flamingo 3 class. AF3's sound tower is a Whisper-large-v3-shaped
encoder followed by AvgPool1d(2, 2) and a LayerNorm, which is exactly transformers'
`Qwen2AudioEncoder` (same module names: conv1, conv2, embed_positions, layers.N.{self_attn.*,
self_attn_layer_norm, fc1, fc2, final_layer_norm}, layer_norm). Accepted checkpoint layouts:
- the original release (nvidia/audio-flamingo-3): a dir holding `sound_tower/` (config.json +
  model.safetensors with the encoder keys unprefixed), or that `sound_tower/` dir itself;
- the transformers-5 conversion (nvidia/audio-flamingo-3-hf): a save_pretrained dir whose keys
  are `audio_tower.*` and whose config.json holds `audio_config`; other keys (LLM, projector)
  are ignored.

Front end: Whisper's 128-mel log-mel on 30 s windows (see `whisper.py`). Unlike Whisper, AF3
masks the padded frames of each window in self-attention (its processor returns the mel mask,
AudioFlamingo3Encoder turns it into an attention mask); card option `attention_mask` (default
true) keeps that. Frame counts use the model's formula: mel frames m = ceil(n / 160), after
conv2 (m - 1) // 2 + 1, after the pool (t - 2) // 2 + 1 (1500 -> 750 per 30 s window, 25 Hz).

Layer k (1-based) at 25 Hz: AvgPool1d(2, 2) of block k's output (or of its FFN output with
`layer_tensor: ffn`); for k = L (block) the closing LayerNorm is applied after the pool, i.e. the
encoder's last_hidden_state, which is what AF3 feeds its projector and what stage 2 distils.
Frame 0 is centred at 10 ms: it averages the 50 Hz frames centred at 0 and 20 ms.
"""
import os

import torch

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher, register_family
from usad2.teachers.families import common
from usad2.teachers.families import whisper

ENCODER_FIELDS = ("num_mel_bins", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim", "d_model",
                  "max_source_positions", "activation_function", "scale_embedding")


def find_tower(path):
    """(config dict, encoder state dict) of an AF3 sound tower from either accepted layout."""
    if os.path.isdir(os.path.join(path, "sound_tower")):
        path = os.path.join(path, "sound_tower")
    config = common.read_json(os.path.join(path, "config.json"))
    config = config.get("audio_config") or config.get("sound_tower_cfg") or config
    state = common.read_hf_weights(path)
    if any(k.startswith("audio_tower.") for k in state):
        state = {k[len("audio_tower."):]: v for k, v in state.items() if k.startswith("audio_tower.")}
    return config, state


def build_encoder(config):
    """transformers Qwen2AudioEncoder with the tower's dimensions (eval-time dropout 0)."""
    from transformers import Qwen2AudioEncoderConfig
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    kwargs = {k: config[k] for k in ENCODER_FIELDS if k in config}
    if "hidden_size" in config and "d_model" not in kwargs:
        kwargs["d_model"] = config["hidden_size"]
    return Qwen2AudioEncoder(Qwen2AudioEncoderConfig(**kwargs))


def window_frames(num_samples):
    """(50 Hz frames after conv2, 25 Hz frames after the pool) of one window's real samples."""
    mel = -(-num_samples // whisper.HOP)
    conv = (max(mel, 1) - 1) // 2 + 1
    return conv, max(1, (conv - 2) // 2 + 1)


def padding_mask(real, num_positions, dtype):
    """Additive (W, 1, T, T) attention mask hiding each window's padded 50 Hz frames."""
    valid = torch.arange(num_positions)[None, :] < torch.tensor([window_frames(n)[0] for n in real])[:, None]
    mask = torch.zeros(len(real), 1, num_positions, num_positions, dtype=dtype)
    return mask.masked_fill(~valid[:, None, None, :], torch.finfo(dtype).min)


def pool(x):
    """AvgPool1d(2, 2) over time of (W, T, D)."""
    return torch.nn.functional.avg_pool1d(x.transpose(1, 2), 2, 2).transpose(1, 2)


@register_family("af_whisper")
class AFWhisperTeacher(Teacher):
    """Frozen AF3 sound tower (Qwen2AudioEncoder + pool) on 30 s log-mel windows, 25 Hz."""

    torch_compute = True

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card)
        path = common.resolve_checkpoint(card, checkpoint, cache)
        config, state = find_tower(path)
        self.encoder = build_encoder(config)
        common.load_strict(self.encoder, state, path)
        common.freeze(self.encoder).to(device)
        cfg = self.encoder.config
        if cfg.encoder_layers != card.num_layers or cfg.d_model != card.width:
            raise TeacherError(f"teacher {card.name}: card says {card.num_layers} layers x {card.width} but "
                               f"{path} has {cfg.encoder_layers} x {cfg.d_model}")
        self.filters = whisper.mel_filters(cfg.num_mel_bins)
        self.use_mask = bool(card.options.get("attention_mask", True))
        self.device = device

    def to(self, device):
        self.encoder.to(device)
        self.device = device
        return self

    def _extract(self, wavs, lengths, layers):
        windows, owner, real = whisper.split_windows(wavs, lengths)
        feats = whisper.log_mel(windows.to(self.device), self.filters)
        positions = self.encoder.config.max_source_positions
        mask = padding_mask(real, positions, feats.dtype).to(self.device) if self.use_mask else None
        blocks, final = whisper.run_encoder(self.encoder, feats, mask, ffn=self.card.layer_tensor == "ffn")
        frames = [window_frames(n)[1] for n in real]
        outs, frame_lengths = [], None
        for k in layers:
            if k == len(blocks) and self.card.layer_tensor == "block":
                x = self.encoder.layer_norm(pool(final))
            else:
                x = pool(blocks[k - 1])
            out, frame_lengths = whisper.join_windows(x, owner, frames, wavs.shape[0])
            outs.append(out)
        return outs, frame_lengths
