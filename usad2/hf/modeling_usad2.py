"""A usad2 student encoder as a transformers model: `AutoModel.from_pretrained(dir, trust_remote_code=True)`.

Written into every directory of `python -m usad2.bin.export --format hf`, beside
`configuration_usad2.py` and `usad2_encoder.py` (a copy of usad2's encoder); it needs torch,
torchaudio and transformers, not usad2.

    model = AutoModel.from_pretrained(dir, trust_remote_code=True).eval()
    out = model(wavs, attention_mask=mask, output_hidden_states=True)

`wavs` (B, N) float 16 kHz in [-1, 1] (or one (N,) wave); `attention_mask` (B, N), 1 = real sample,
0 = padding (Hugging Face convention; default: all real). `out.last_hidden_state` (B, T, D) is the
last layer, `out.hidden_states` the front-end output followed by layers 1..L (L + 1 tensors, the
same as `usad2.load(dir)(wavs, lengths).hidden_states`), `out.attention_mask` (B, T) marks the
valid output frames (1) at 100 / time_stride Hz. Every wave needs at least one 25 ms window (400
samples); padding never changes a wave's features.

The front end is usad2's (`usad2/audio/frontend.py`): per wave, the mean is removed, the wave is
scaled to the int16 range and Kaldi's fbank (torchaudio.compliance.kaldi) runs with the settings
of `config.fbank_config`, then (x - mean) / (2 std).
"""
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torchaudio
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_usad2 import Usad2Config
from .usad2_encoder import EncoderConfig, StudentEncoder

INT16_SCALE = 32768.0


@dataclass
class Usad2ModelOutput(ModelOutput):
    """last_hidden_state (B, T, D); hidden_states: L + 1 x (B, T, D) when asked; attention_mask (B, T)."""
    last_hidden_state: Optional[torch.FloatTensor] = None
    hidden_states: Optional[Tuple[torch.FloatTensor, ...]] = None
    attention_mask: Optional[torch.LongTensor] = None


def _fbank_one(wave, fb):
    wave = wave.to(torch.float32)
    wave = wave - wave.mean()
    feats = torchaudio.compliance.kaldi.fbank(
        wave.unsqueeze(0) * INT16_SCALE,
        sample_frequency=fb["sample_rate"],
        num_mel_bins=fb["num_mel_bins"],
        frame_length=fb["frame_length_ms"],
        frame_shift=fb["frame_shift_ms"],
        window_type=fb["window_type"],
        htk_compat=True,
        use_energy=False,
        dither=0.0,
    )
    return (feats - fb["mean"]) / (2 * fb["std"])


class Usad2PreTrainedModel(PreTrainedModel):
    config_class = Usad2Config
    base_model_prefix = "usad2"
    main_input_name = "input_values"

    def _init_weights(self, module):
        """Weights come from model.safetensors; a fresh model keeps torch's default initialisation."""


class Usad2Model(Usad2PreTrainedModel):
    """fbank front end + the usad2 student encoder (state dict keys "encoder.*", as in a usad2 export)."""

    def __init__(self, config):
        super().__init__(config)
        self.encoder = StudentEncoder(EncoderConfig.from_dict(config.encoder_config))
        self.post_init()

    @property
    def frame_rate(self):
        """Output frames per second (50.0 at time_stride 2, 25.0 at 4)."""
        return 1000.0 / self.config.fbank_config["frame_shift_ms"] / self.config.encoder_config["time_stride"]

    @property
    def window_samples(self):
        fb = self.config.fbank_config
        return int(round(fb["sample_rate"] * fb["frame_length_ms"] / 1000))

    def features(self, input_values, lengths):
        """(fbank (B, T, bins), fbank lengths (B,)) on the model's device; the fbank runs in fp32."""
        fb = self.config.fbank_config
        device = next(self.parameters()).device
        waves = input_values.detach().float()
        lengths = lengths.cpu()
        short = [i for i, n in enumerate(lengths.tolist()) if n < self.window_samples]
        if short:
            raise ValueError(f"usad2: waves {short} are shorter than one {fb['frame_length_ms']} ms window "
                             f"({self.window_samples} samples); pad them")
        with torch.autocast(device_type=waves.device.type, enabled=False):
            feats = [_fbank_one(w[:n], fb) for w, n in zip(waves, lengths.tolist())]
        feat_lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        out = feats[0].new_zeros(len(feats), int(feat_lengths.max()), fb["num_mel_bins"])
        for i, f in enumerate(feats):
            out[i, : f.shape[0]] = f
        return out.to(device), feat_lengths.to(device)

    def forward(self, input_values, attention_mask=None, output_hidden_states=None, return_dict=None,
                **kwargs):
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if return_dict is None:
            return_dict = getattr(self.config, "use_return_dict", True)
        if input_values.dim() == 1:
            input_values = input_values.unsqueeze(0)
            attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
        if input_values.dim() != 2:
            raise ValueError(f"usad2: input_values must be (batch, samples), got {tuple(input_values.shape)}")
        if attention_mask is None:
            lengths = torch.full((input_values.shape[0],), input_values.shape[1], dtype=torch.long)
        else:
            lengths = attention_mask.long().sum(-1)
        feats, feat_lengths = self.features(input_values, lengths)
        enc = self.encoder(feats, feat_lengths)
        frame_mask = (~enc.padding_mask).long()
        hidden = tuple(enc.hidden_states) if output_hidden_states else None
        if not return_dict:
            return tuple(x for x in (enc.hidden_states[-1], hidden, frame_mask) if x is not None)
        return Usad2ModelOutput(last_hidden_state=enc.hidden_states[-1], hidden_states=hidden,
                                attention_mask=frame_mask)
