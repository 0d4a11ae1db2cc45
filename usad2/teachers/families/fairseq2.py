"""wav2vec2 through fairseq2 0.6's model family as a teacher: family `fairseq2`.

Card options: `arch` (a fairseq2 wav2vec2 architecture name: base, large, large_lv60k;
default base), `encoder` (overrides of Wav2Vec2EncoderConfig fields, e.g. for a custom size),
`config` (overrides of top-level Wav2Vec2Config fields), `normalize` (per-utterance zero mean /
unit variance of the waveform, for the lv60k models; default false), `max_chunk_seconds`
(default 30). The checkpoint (fairseq2 `{"model": state}` or an original fairseq wav2vec2 .pt;
fairseq2 converts the latter's keys) is loaded by fairseq2's own
`get_wav2vec2_model_hub().load_custom_model(path, config, restrict=True)` (restricted unpickling).

Inference path: feature extractor -> process_features without a masker -> transformer encoder;
layer k = output of encoder layer k (post-LN models: the block output; `layer_tensor: ffn` = the
layer's FFN output). Utterances go through unpadded one at a time (the first conv's GroupNorm
spans time, so padding would change frames); long ones are chunked with receptive-field overlap
(`common.conv_chunks`) so the conv frames equal those of the whole input.

Gap: w2v-BERT (fbank front end + conformer, fairseq2 family `wav2vec2` with use_fbank / the
`w2vbert` family) is not implemented yet.
"""
import dataclasses
from pathlib import Path

import torch

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher, register_family
from usad2.teachers.families import common


def make_config(options):
    """A fairseq2 Wav2Vec2Config from the card options (arch + overrides)."""
    from fairseq2.models.wav2vec2 import get_wav2vec2_model_hub

    hub = get_wav2vec2_model_hub()
    arch = options.get("arch", "base")
    try:
        config = hub.get_arch_config(arch)
    except Exception as e:  # fairseq2 raises its own not-known error
        raise TeacherError(f"fairseq2 wav2vec2: unknown arch {arch!r}: {e}") from None
    enc = dict(options.get("encoder") or {})
    if "feature_extractor_layer_descs" in enc:
        enc["feature_extractor_layer_descs"] = [tuple(d) for d in enc["feature_extractor_layer_descs"]]
    try:
        encoder_config = dataclasses.replace(config.encoder_config, **enc)
        return dataclasses.replace(config, encoder_config=encoder_config, **(options.get("config") or {}))
    except TypeError as e:
        raise TeacherError(f"fairseq2 wav2vec2: bad config override: {e}") from None


def conv_geometry(layer_descs):
    """(hop, receptive field) in samples of a wav2vec2 conv feature extractor."""
    hop, receptive = 1, 1
    for _dim, kernel, stride in layer_descs:
        receptive += (kernel - 1) * hop
        hop *= stride
    return hop, receptive


@register_family("fairseq2")
class Fairseq2Wav2Vec2Teacher(Teacher):
    """Frozen fairseq2 Wav2Vec2Model run in inference mode (no masking)."""

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card)
        from fairseq2.models.wav2vec2 import get_wav2vec2_model_hub

        path = common.resolve_checkpoint(card, checkpoint, cache)
        self.config = make_config(card.options or {})
        try:
            model = get_wav2vec2_model_hub().load_custom_model(
                Path(path), self.config, device=torch.device(device), restrict=True, progress=False)
        except Exception as e:  # fairseq2's ModelCheckpointError and friends
            raise TeacherError(f"{path}: fairseq2 cannot load it as wav2vec2 {self.config.encoder_config}: {e}") from None
        self.model = common.freeze(model)
        enc = self.config.encoder_config
        if enc.num_encoder_layers != card.num_layers or enc.model_dim != card.width:
            raise TeacherError(f"teacher {card.name}: card says {card.num_layers} layers x {card.width} but "
                               f"the config has {enc.num_encoder_layers} x {enc.model_dim}")
        self.hop, self.receptive = conv_geometry(enc.feature_extractor_layer_descs)
        self.max_frames = max(1, int(float(card.options.get("max_chunk_seconds", 30)) * 16000) // self.hop)
        self.normalize = bool(card.options.get("normalize", False))
        self.device = device

    def to(self, device):
        self.model.to(device)
        self.device = device
        return self

    def num_frames(self, num_samples):
        """Conv frame count: (max(n, receptive) - receptive) // hop + 1."""
        return (max(num_samples, self.receptive) - self.receptive) // self.hop + 1

    def _extract(self, wavs, lengths, layers):
        per_layer = [[] for _ in layers]
        for b in range(wavs.shape[0]):
            wav = wavs[b, :int(lengths[b])].to(self.device, torch.float32)
            if self.normalize:
                wav = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-5)
            if wav.numel() < self.receptive:
                wav = torch.nn.functional.pad(wav, (0, self.receptive - wav.numel()))
            pieces = [self._chunk(wav[s:e], layers) for s, e in
                      common.conv_chunks(wav.numel(), self.hop, self.receptive, self.max_frames)]
            for i in range(len(layers)):
                per_layer[i].append(torch.cat([p[i] for p in pieces], dim=0))
        outs, frame_lengths = [], None
        for seqs in per_layer:
            padded, frame_lengths = common.pad_stack(seqs)
            outs.append(padded)
        return outs, frame_lengths

    def _chunk(self, wav, layers):
        from fairseq2.nn import BatchLayout

        seqs = wav[None]
        frontend = self.model.encoder_frontend
        feats, layout, _raw = frontend.extract_features(seqs, BatchLayout.of(seqs))
        feats, _ = frontend.process_features(feats, layout, None)
        targets = [layer.ffn if self.card.layer_tensor == "ffn" else layer for layer in self.model.encoder.layers]
        with common.FfnCapture(targets) as cap:
            self.model.encoder(feats, layout)
        return [cap.outputs[k - 1][0] for k in layers]
