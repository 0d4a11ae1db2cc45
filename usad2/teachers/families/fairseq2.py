"""wav2vec2 and w2v-BERT through fairseq2 0.6's model families as teachers: family `fairseq2`.

Card option `model_family` picks the fairseq2 family: `wav2vec2` (default) or `w2vbert`.
Other options: `arch` (a fairseq2 architecture name of that family: wav2vec2 base, large,
large_lv60k (default base); w2vbert 300m, 600m (default 600m)), `encoder` (overrides of
Wav2Vec2EncoderConfig fields, e.g. for a custom size), `config` (overrides of top-level
Wav2Vec2Config fields), `bert` (w2vbert only: overrides of top-level W2VBertConfig fields, e.g.
num_bert_encoder_layers), `normalize` (wav2vec2 only: per-utterance zero mean / unit variance
of the waveform, for the lv60k models; default false), `max_chunk_seconds` (default 30). The
checkpoint (fairseq2 `{"model": state}` or an original fairseq .pt; fairseq2 converts the
latter's keys) is loaded by fairseq2's own `get_<family>_model_hub().load_custom_model(path,
config, restrict=True)` (restricted unpickling).

wav2vec2 inference path: conv feature extractor -> process_features without a masker ->
transformer encoder. Utterances go through unpadded one at a time (the first conv's GroupNorm
spans time, so padding would change frames); long ones are chunked with receptive-field overlap
(`common.conv_chunks`) so the conv frames equal those of the whole input.

w2v-BERT inference path (the wav2vec2 model inside W2VBertModel; the BERT head is unused):
80-bin Kaldi fbank as fairseq2's data pipeline makes it (`WaveformToFbankConverter`,
waveform scaled by 2**15, each mel bin standardised over the utterance, 25 ms / 10 ms, 100 Hz)
-> the model's fbank "feature extractor" stacks `fbank_stride` (2) frames into one
(160 dims, 50 Hz) -> post-extract LayerNorm, projection -> conformer encoder with relative
position attention. The fbank is computed once over the whole utterance (so chunking never
changes the standardisation); long utterances are split into chunks of stacked frames, which
cuts only the encoder context. The relative position table holds `max_seq_len` (4096) frames,
so a chunk may not be longer. `sample_fbank_every_k` (a training-time batch subsampling that
would drop utterances) is forced to 1: it has no parameters.

Layer k = output of encoder layer k (`layer_tensor: ffn` = the layer's FFN output: wav2vec2's
`ffn`, the conformer's second half-step `ffn2`, before its 0.5 scaling).

Gap: the public w2v-BERT 2.0 checkpoint (facebook/w2v-bert-2.0, seamless' `conformer_shaw`)
uses Shaw relative attention, which fairseq2 0.6's wav2vec2 factory does not build; it is not
loadable here.
"""
import dataclasses
from pathlib import Path

import torch

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher, register_family
from usad2.teachers.families import common

# fairseq2 data pipeline constants for fbank models (Kaldi framing at 16 kHz).
FBANK_WINDOW, FBANK_SHIFT = 400, 160


def _replace(config, overrides, what):
    """dataclasses.replace with a TeacherError naming the bad override."""
    try:
        return dataclasses.replace(config, **(overrides or {}))
    except TypeError as e:
        raise TeacherError(f"fairseq2 {what}: bad config override: {e}") from None


def _arch_config(hub, family, arch):
    try:
        return hub.get_arch_config(arch)
    except Exception as e:  # fairseq2 raises its own not-known error
        raise TeacherError(f"fairseq2 {family}: unknown arch {arch!r}: {e}") from None


def _w2v2_config(config, options, what):
    """A Wav2Vec2Config with the card's `encoder` and `config` overrides applied."""
    enc = dict(options.get("encoder") or {})
    if "feature_extractor_layer_descs" in enc:
        enc["feature_extractor_layer_descs"] = [tuple(d) for d in enc["feature_extractor_layer_descs"]]
    encoder_config = _replace(config.encoder_config, enc, what)
    return _replace(dataclasses.replace(config, encoder_config=encoder_config), options.get("config"), what)


def make_config(options):
    """A fairseq2 Wav2Vec2Config from the card options (arch + overrides)."""
    from fairseq2.models.wav2vec2 import get_wav2vec2_model_hub

    config = _arch_config(get_wav2vec2_model_hub(), "wav2vec2", options.get("arch", "base"))
    return _w2v2_config(config, options, "wav2vec2")


def make_w2vbert_config(options):
    """A fairseq2 W2VBertConfig from the card options (arch + encoder/config/bert overrides)."""
    from fairseq2.models.w2vbert import get_w2vbert_model_hub

    config = _arch_config(get_w2vbert_model_hub(), "w2vbert", options.get("arch", "600m"))
    w2v2 = _w2v2_config(config.w2v2_config, options, "w2vbert")
    w2v2 = dataclasses.replace(w2v2, encoder_config=dataclasses.replace(w2v2.encoder_config, sample_fbank_every_k=1))
    return _replace(dataclasses.replace(config, w2v2_config=w2v2), options.get("bert"), "w2vbert")


def conv_geometry(layer_descs):
    """(hop, receptive field) in samples of a wav2vec2 conv feature extractor."""
    hop, receptive = 1, 1
    for _dim, kernel, stride in layer_descs:
        receptive += (kernel - 1) * hop
        hop *= stride
    return hop, receptive


@register_family("fairseq2")
def build_fairseq2_teacher(card, cache=None, device="cpu", checkpoint=None):
    """The fairseq2 teacher class selected by the card's `model_family` option."""
    family = (card.options or {}).get("model_family", "wav2vec2")
    classes = {"wav2vec2": Fairseq2Wav2Vec2Teacher, "w2vbert": Fairseq2W2VBertTeacher}
    if family not in classes:
        raise TeacherError(f"teacher {card.name}: fairseq2 model_family {family!r} is not one of {sorted(classes)}")
    return classes[family](card, cache=cache, device=device, checkpoint=checkpoint)


class _Fairseq2Teacher(Teacher):
    """Shared part: load through fairseq2's hub, freeze, check the card, run one utterance at a time.

    Subclasses set `family`, and implement `_make_config`, `_hub`, `_w2v2` (the Wav2Vec2Model
    inside the loaded model) and `_utterance` (one unpadded waveform -> per-layer (T, D)).
    """

    torch_compute = True
    family = None

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card)
        path = common.resolve_checkpoint(card, checkpoint, cache)
        self.config = self._make_config(card.options or {})
        try:
            model = self._hub().load_custom_model(
                Path(path), self.config, device=torch.device(device), restrict=True, progress=False)
        except Exception as e:  # fairseq2's ModelCheckpointError and friends
            raise TeacherError(f"{path}: fairseq2 cannot load it as {self.family} {self.encoder_config} "
                               f"(read with weights_only=True): {common.load_failure(e)}") from None
        self.model = common.freeze(model)
        enc = self.encoder_config
        if enc.num_encoder_layers != card.num_layers or enc.model_dim != card.width:
            raise TeacherError(f"teacher {card.name}: card says {card.num_layers} layers x {card.width} but "
                               f"the config has {enc.num_encoder_layers} x {enc.model_dim}")
        self.device = device

    @property
    def encoder_config(self):
        return self._w2v2_config().encoder_config

    def to(self, device):
        self.model.to(device)
        self.device = device
        return self

    def _extract(self, wavs, lengths, layers):
        return common.extract_each(wavs, lengths, self.device, lambda wav: self._utterance(wav, layers))

    def _encode(self, seqs, layers):
        """Frontend (features -> model dim, no masker) and encoder on one (1, S, *) chunk."""
        from fairseq2.nn import BatchLayout

        w2v2 = self._w2v2()
        frontend = w2v2.encoder_frontend
        feats, layout, _raw = frontend.extract_features(seqs, BatchLayout.of(seqs))
        feats, _ = frontend.process_features(feats, layout, None)
        blocks = list(w2v2.encoder.layers)
        targets = [self._ffn(block) for block in blocks] if self.card.layer_tensor == "ffn" else blocks
        with common.FfnCapture(targets) as cap:
            w2v2.encoder(feats, layout)
        return [cap.outputs[k - 1][0] for k in layers]


class Fairseq2Wav2Vec2Teacher(_Fairseq2Teacher):
    """Frozen fairseq2 Wav2Vec2Model run in inference mode (no masking)."""
    family = "wav2vec2"

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card, cache=cache, device=device, checkpoint=checkpoint)
        self.hop, self.receptive = conv_geometry(self.encoder_config.feature_extractor_layer_descs)
        self.max_frames = max(1, int(float(card.options.get("max_chunk_seconds", 30)) * 16000) // self.hop)
        self.normalize = bool(card.options.get("normalize", False))

    def _make_config(self, options):
        return make_config(options)

    def _hub(self):
        from fairseq2.models.wav2vec2 import get_wav2vec2_model_hub

        return get_wav2vec2_model_hub()

    def _w2v2_config(self):
        return self.config

    def _w2v2(self):
        return self.model

    @staticmethod
    def _ffn(block):
        return block.ffn

    def num_frames(self, num_samples):
        """Conv frame count: (max(n, receptive) - receptive) // hop + 1."""
        return (max(num_samples, self.receptive) - self.receptive) // self.hop + 1

    def _utterance(self, wav, layers):
        if self.normalize:
            wav = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-5)
        if wav.numel() < self.receptive:
            wav = torch.nn.functional.pad(wav, (0, self.receptive - wav.numel()))
        pieces = [self._encode(wav[s:e][None], layers) for s, e in
                  common.conv_chunks(wav.numel(), self.hop, self.receptive, self.max_frames)]
        return [torch.cat([p[i] for p in pieces], dim=0) for i in range(len(layers))]


class Fairseq2W2VBertTeacher(_Fairseq2Teacher):
    """Frozen fairseq2 W2VBertModel: its wav2vec2 fbank front end and conformer encoder, no masking."""
    family = "w2vbert"

    def __init__(self, card, cache=None, device="cpu", checkpoint=None):
        super().__init__(card, cache=cache, device=device, checkpoint=checkpoint)
        enc = self.encoder_config
        if not enc.use_fbank:
            raise TeacherError(f"teacher {card.name}: w2vbert config has use_fbank false; use model_family wav2vec2")
        self.stride, self.num_mels = enc.fbank_stride, enc.num_fbank_channels
        self.max_frames = max(1, int(float(card.options.get("max_chunk_seconds", 30)) * 100) // self.stride)
        if self.max_frames > enc.max_seq_len:
            raise TeacherError(f"teacher {card.name}: max_chunk_seconds gives {self.max_frames} frames per chunk, "
                               f"more than the relative position table's max_seq_len {enc.max_seq_len}")
        from fairseq2.data.audio import WaveformToFbankConverter

        self.fbank = WaveformToFbankConverter(num_mel_bins=self.num_mels, waveform_scale=2 ** 15,
                                              channel_last=True, standardize=True)

    def _make_config(self, options):
        return make_w2vbert_config(options)

    def _hub(self):
        from fairseq2.models.w2vbert import get_w2vbert_model_hub

        return get_w2vbert_model_hub()

    def _w2v2_config(self):
        return self.config.w2v2_config

    def _w2v2(self):
        return self.model.w2v2_model

    @staticmethod
    def _ffn(block):
        return block.ffn2

    def min_samples(self):
        """Fewest samples that give one stacked frame (`stride` Kaldi frames); shorter input is zero-padded."""
        return FBANK_WINDOW + (self.stride - 1) * FBANK_SHIFT

    def num_frames(self, num_samples):
        """Stacked fbank frames: (1 + (n - 400) // 160) // stride, n padded up to min_samples()."""
        n = max(num_samples, self.min_samples())
        return (1 + (n - FBANK_WINDOW) // FBANK_SHIFT) // self.stride

    def _utterance(self, wav, layers):
        if wav.numel() < self.min_samples():
            wav = torch.nn.functional.pad(wav, (0, self.min_samples() - wav.numel()))
        fbank = self.fbank({"waveform": wav.cpu()[:, None], "sample_rate": 16000})["fbank"].to(self.device)
        fbank = fbank[:self.num_frames(wav.numel()) * self.stride]
        step = self.max_frames * self.stride
        pieces = [self._encode(fbank[s:s + step][None], layers) for s in range(0, fbank.shape[0], step)]
        return [torch.cat([p[i] for p in pieces], dim=0) for i in range(len(layers))]
