"""X-ARES and XARES-LLM encoders for a usad2 export (docs/architecture.md#51-hear-x-ares-and-hugging-face).

X-ARES (`pip install xares`) builds the encoder class of the module it is given with no arguments,
so the model is chosen by environment variables:

    USAD2_MODEL=exp/tag/export/model.pt USAD2_LAYER= python -m xares.run usad2.xares src/tasks/*.py

USAD2_MODEL: a usad2 export file or Hugging Face model directory (required).
USAD2_LAYER: empty (default) = the mean of the L transformer layers, k = hidden_states[k]
(0 = front end, L = last layer); the same choice as `usad2.hear.load_model(path, layer)`.
USAD2_CHUNK_SECONDS: attention chunk for long audio (default 30, as usad2.hear).

`Usad2Encoder` is this module's only name ending in "Encoder" (X-ARES picks the class by that
suffix): `forward(audio (B, T) 16 kHz) -> (B, T', D)`, with `output_dim`, `sampling_rate` and
`hop_size_in_ms` (20 at 50 Hz, 40 at 25 Hz). `xares.audio_encoder_checker.check_audio_encoder`
accepts it.

XARES-LLM takes the class by its dotted path, with keyword arguments from `--model_args`:

    python -m xares_llm.run usad2.xares.Usad2XaresLLM task1 task1 --model_args '{"model": "exp/tag/export/model.pt"}'

`Usad2XaresLLM.forward(audio (B, T), audio_attention_mask (B, T)) -> (features (B, T', D),
feature_attention_mask (B, T'))`; masks follow Hugging Face: 1 = keep, 0 = padding. Both
classes are in eval mode (dropout off) and run without gradients.
"""
import os

import torch
from torch import nn

from usad2.errors import ConfigError

MODEL_ENV = "USAD2_MODEL"
LAYER_ENV = "USAD2_LAYER"
CHUNK_ENV = "USAD2_CHUNK_SECONDS"


def _settings(model, layer, chunk_seconds):
    """Keyword arguments win; the environment variables fill what is not given."""
    from usad2.hear import DEFAULT_CHUNK_SECONDS

    model = model if model is not None else os.environ.get(MODEL_ENV, "")
    if not model:
        raise ConfigError(f"usad2.xares: set {MODEL_ENV} to a usad2 export file or Hugging Face directory "
                          f"(X-ARES builds the encoder without arguments)")
    if layer is None:
        text = os.environ.get(LAYER_ENV, "").strip()
        if text:
            try:
                layer = int(text)
            except ValueError:
                raise ConfigError(f"{LAYER_ENV}={text!r}: expected a layer number or nothing") from None
    if chunk_seconds is None:
        text = os.environ.get(CHUNK_ENV, "").strip()
        try:
            chunk_seconds = float(text) if text else DEFAULT_CHUNK_SECONDS
        except ValueError:
            raise ConfigError(f"{CHUNK_ENV}={text!r}: expected a number of seconds") from None
    return model, layer, chunk_seconds


class _Usad2Features(nn.Module):
    """The shared part: a usad2.hear HearModel and the attributes both benchmarks read."""

    def __init__(self, model=None, layer=None, chunk_seconds=None):
        super().__init__()
        from usad2.hear import load_model

        path, layer, chunk_seconds = _settings(model, layer, chunk_seconds)
        try:
            self.hear = load_model(path, layer=layer, chunk_seconds=chunk_seconds)
        except ValueError as e:  # a layer outside 0..L
            raise ConfigError(f"usad2.xares: {e}") from None
        self.model_path = os.fspath(path)
        self.layer = layer
        self.output_dim = self.hear.embedding_size
        self.sampling_rate = self.hear.sample_rate
        self.hop_size_in_ms = float(1000.0 / self.hear.model.frame_rate)
        self.eval()

    @staticmethod
    def _batch(audio):
        audio = torch.as_tensor(audio)
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if audio.dim() != 2:
            raise ValueError(f"usad2.xares: audio must be (batch, samples), got shape {tuple(audio.shape)}")
        return audio.float()


class Usad2Encoder(_Usad2Features):
    """X-ARES audio encoder: forward(audio (B, T)) -> (B, T', output_dim); see the module docstring."""

    def forward(self, audio):
        with torch.no_grad():
            return self.hear.embed(self._batch(audio))[0]


class Usad2XaresLLM(_Usad2Features):
    """XARES-LLM audio encoder: forward(audio, audio_attention_mask) -> (features, feature mask)."""

    def __init__(self, model=None, layer=None, chunk_seconds=None, **kwargs):
        super().__init__(model=model, layer=layer, chunk_seconds=chunk_seconds)

    def forward(self, audio, audio_attention_mask=None):
        audio = self._batch(audio)
        lengths = None
        if audio_attention_mask is not None:
            mask = torch.as_tensor(audio_attention_mask).reshape(audio.shape[0], -1)
            if mask.shape[1] != audio.shape[1]:
                raise ValueError(f"usad2.xares: audio_attention_mask {tuple(mask.shape)} does not match audio "
                                 f"{tuple(audio.shape)}")
            lengths = (mask != 0).long().sum(-1)
        with torch.no_grad():
            features, frames = self.hear.embed(audio, lengths)
        frame_mask = (torch.arange(features.shape[1], device=features.device)[None, :]
                      < frames.to(features.device)[:, None])
        dtype = audio_attention_mask.dtype if torch.is_tensor(audio_attention_mask) else torch.long
        return features, frame_mask.to(dtype)
