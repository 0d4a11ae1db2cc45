"""WavLM (Hugging Face transformers format) as a teacher: family `hf_wavlm`.

Checkpoint: a `save_pretrained` dir (config.json + model.safetensors or pytorch_model.bin,
optionally preprocessor_config.json), e.g. microsoft/wavlm-base-plus. Weights are read here and
loaded strictly into `transformers.WavLMModel`; a `wavlm.` prefix (checkpoints of WavLMFor*
heads) is stripped and head weights dropped, and the legacy weight-norm names of the positional
conv (`weight_g`/`weight_v`, what the hub files hold) are renamed to torch's parametrization names.

Padding: WavLM Base+ was trained without an attention mask and its first conv layer uses
GroupNorm over time, so zero padding would change every frame. Each utterance is therefore fed
unpadded, one at a time; outputs are zero-padded afterwards.

Normalisation: per-utterance zero mean / unit variance when the checkpoint's
preprocessor_config.json says `do_normalize: true` (card option `normalize` overrides; Base+
ships false).

Long inputs: above card option `max_chunk_seconds` the waveform is cut into chunks that overlap
by receptive field - hop (400 - 320 samples) so the conv frames are exactly those of the whole
input (see `common.conv_chunks`); transformer context stops at chunk borders.

Layer k (1-based) = hidden_states[k] (`layer_tensor: block`) or the FFN output of block k
(`layer_tensor: ffn`, captured before the residual sum).
"""
import math
import os

import torch

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher, register_family
from usad2.teachers.families import common

HEAD_PREFIXES = ("lm_head.", "projector.", "classifier.", "tdnn.", "feature_extractor_head.", "objective.")


def convert_state(state):
    """Map the keys of an HF WavLM checkpoint onto WavLMModel's own state-dict names."""
    if any(k.startswith("wavlm.") for k in state):
        state = {k[len("wavlm."):]: v for k, v in state.items() if k.startswith("wavlm.")}
    out = {}
    for k, v in state.items():
        if k.startswith(HEAD_PREFIXES):
            continue
        k = k.replace("pos_conv_embed.conv.weight_g", "pos_conv_embed.conv.parametrizations.weight.original0")
        k = k.replace("pos_conv_embed.conv.weight_v", "pos_conv_embed.conv.parametrizations.weight.original1")
        out[k] = v
    return out


def build_model(config_dict):
    """An (untrained) transformers WavLMModel from a config.json dict."""
    from transformers import WavLMConfig, WavLMModel

    config = WavLMConfig(**{k: v for k, v in config_dict.items() if k not in ("architectures",)})
    return WavLMModel(config)


def conv_geometry(config):
    """(hop, receptive field) in samples of the conv feature encoder."""
    hop, receptive = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride):
        receptive += (k - 1) * hop
        hop *= s
    return hop, receptive


@register_family("hf_wavlm")
class HFWavLMTeacher(Teacher):
    """Frozen transformers WavLMModel read from a local save_pretrained dir."""

    torch_compute = True

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card)
        path = common.resolve_checkpoint(card, checkpoint, cache)
        config = common.read_json(os.path.join(path, "config.json"))
        self.model = build_model(config)
        common.load_strict(self.model, convert_state(common.read_hf_weights(path)), path)
        common.freeze(self.model).to(device)
        if self.model.config.num_hidden_layers != card.num_layers or self.model.config.hidden_size != card.width:
            raise TeacherError(f"teacher {card.name}: card says {card.num_layers} layers x {card.width} but "
                               f"{path} has {self.model.config.num_hidden_layers} x {self.model.config.hidden_size}")
        self.normalize = card.options.get("normalize")
        if self.normalize is None:
            pre = os.path.join(path, "preprocessor_config.json")
            self.normalize = bool(common.read_json(pre).get("do_normalize", False)) if os.path.exists(pre) else False
        self.hop, self.receptive = conv_geometry(self.model.config)
        self.max_frames = max(1, int(float(card.options.get("max_chunk_seconds", 30)) * 16000) // self.hop)
        self.device = device

    def to(self, device):
        self.model.to(device)
        self.device = device
        return self

    def _extract(self, wavs, lengths, layers):
        return common.extract_each(wavs, lengths, self.device, lambda wav: self._one(wav, layers))

    def _one(self, wav, layers):
        """Layers of one unpadded utterance: list of (T, D)."""
        if self.normalize:
            wav = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)
        if wav.numel() < self.receptive:  # shorter than one frame: pad to exactly one frame
            wav = torch.nn.functional.pad(wav, (0, self.receptive - wav.numel()))
        pieces = [self._chunk(wav[s:e], layers) for s, e in
                  common.conv_chunks(wav.numel(), self.hop, self.receptive, self.max_frames)]
        return [torch.cat([p[i] for p in pieces], dim=0) for i in range(len(layers))]

    def _chunk(self, wav, layers):
        if self.card.layer_tensor == "ffn":
            with common.FfnCapture(layer.feed_forward for layer in self.model.encoder.layers) as cap:
                self.model(wav[None])
            return [cap.outputs[k - 1][0] for k in layers]
        hidden = self.model(wav[None], output_hidden_states=True).hidden_states
        return [hidden[k][0] for k in layers]

    def num_frames(self, num_samples):
        """Frames for `num_samples` samples by the model's own conv formula (at least 1)."""
        n = int(self.model._get_feat_extract_output_lengths(torch.tensor(max(num_samples, self.receptive))))
        return max(n, 1)


def expected_frames(num_samples, hop=320, receptive=400):
    """Closed form of the conv formula for WavLM/wav2vec2 geometry (used by docs and tests)."""
    return max(1, math.floor((max(num_samples, receptive) - receptive) / hop) + 1)
