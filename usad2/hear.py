"""HEAR 2021 API for a usad2 export: `load_model`, `get_scene_embeddings`, `get_timestamp_embeddings`.

    import usad2.hear as hear
    model = hear.load_model("exp/tag/export/model.pt")        # layer=None: layer average
    emb, ts = hear.get_timestamp_embeddings(audio, model)     # audio (n_sounds, n_samples), 16 kHz

The official validator accepts the module as it is (docs/architecture.md#51-hear-x-ares-and-hugging-face):
    python -m hearvalidator.validate usad2.hear --model exp/tag/export/model.pt --device cpu
`model_file_path` may also be a Hugging Face model directory (`export --format hf`). The model
is returned in eval mode (dropout off), so embeddings are deterministic; `timestamp_embeddings`
and `scene_embeddings` are kept as aliases of the `get_` names.

Which features: by default the mean of the L transformer layers' hidden states (hidden_states[1..L],
not the front-end output): the layer average is a robust frozen feature across speech, sound and
music, where the best single layer differs by task. `load_model(path, layer=k)` returns
hidden_states[k] instead (0 = front end, L = last layer). Scene embeddings are the mean over time
of the timestamp embeddings.

Timestamps: fbank frame j covers samples [160 j, 160 j + 400), centre 12.5 ms + 10 ms * j. The
conv subsampler (kernel 3, padding 1) centres output frame t on fbank frame time_stride * t, so
    timestamp(t) = 12.5 ms + 10 ms * time_stride * t    (50 Hz: 12.5 + 20 t; 25 Hz: 12.5 + 40 t).
Long sounds are cut into chunks of `chunk_seconds` of fbank frames (a multiple of time_stride,
so the formula stays exact) to bound attention memory; sounds shorter than a chunk see their whole
context. Sounds shorter than one 25 ms window are zero-padded to one window; their single
frame covers the whole sound, so its timestamp is the sound's centre (n_samples / 2), inside the
sound, not the padded window's 12.5 ms.
"""
import torch
from torch import nn

from usad2.errors import AudioError
from usad2.utils.precision import autocast, resolve_precision

sample_rate = 16000
DEFAULT_CHUNK_SECONDS = 30.0


class HearModel(nn.Module):
    """A Usad2Model plus the attributes the HEAR API asks for."""

    sample_rate = sample_rate

    def __init__(self, model, layer=None, chunk_seconds=DEFAULT_CHUNK_SECONDS, precision="fp32"):
        super().__init__()
        if model.fbank_config.sample_rate != sample_rate:
            raise AudioError(f"HEAR audio is {sample_rate} Hz but the model expects {model.fbank_config.sample_rate} Hz")
        if layer is not None and not 0 <= layer <= model.config.num_layers:
            raise ValueError(f"layer must be in 0..{model.config.num_layers} or None, got {layer}")
        self.model = model.eval()
        self.layer = layer
        self.precision = resolve_precision(precision, next(model.parameters()).device)
        stride = model.config.time_stride
        frames = int(chunk_seconds * 1000 / model.fbank_config.frame_shift_ms)
        self.chunk_frames = max(stride, frames - frames % stride)
        self.embedding_size = int(model.config.d_model)
        self.scene_embedding_size = self.embedding_size
        self.timestamp_embedding_size = self.embedding_size
        self.eval()  # frozen features: dropout off (HEAR calls the model as returned)

    def frame_centres_ms(self, num_frames, num_samples=None):
        """Centre in ms of output frames 0..num_frames-1 (see the module docstring).

        With `num_samples` shorter than one window (the sound was zero-padded), the one frame's
        centre is the sound's centre, so the timestamp stays inside the sound.
        """
        fb = self.model.fbank_config
        if num_samples is not None and num_samples < fb.window_samples:
            return torch.full((num_frames,), 1000.0 * num_samples / 2 / fb.sample_rate, dtype=torch.float64)
        timing = self.model.timing  # the model's own frame timing, as distillation aligns it
        t = torch.arange(num_frames, dtype=torch.float64)
        return 1000.0 * timing.offset + float(1000 / timing.rate) * t

    def select(self, output):
        """The chosen feature from an EncoderOutput: (B, T, D)."""
        if self.layer is not None:
            return output.hidden_states[self.layer]
        return torch.stack(output.hidden_states[1:], dim=0).mean(dim=0)

    def forward(self, audio):
        """(n_sounds, n_samples) -> (n_sounds, T, D), chunked along fbank frames."""
        return self.embed(audio)[0]

    def embed(self, audio, lengths=None):
        """(n_sounds, n_samples) [+ valid samples (n_sounds,)] -> (embeddings (n_sounds, T, D), frames (n_sounds,)).

        Sounds (or lengths) shorter than one window are zero-padded to one window; frames past a
        sound's length are zero.
        """
        fb = self.model.fbank_config
        if audio.dim() != 2:
            raise AudioError(f"HEAR audio must be (n_sounds, n_samples), got shape {tuple(audio.shape)}")
        if audio.shape[1] < fb.window_samples:
            audio = torch.nn.functional.pad(audio, (0, fb.window_samples - audio.shape[1]))
        if lengths is not None:
            lengths = torch.as_tensor(lengths).long().cpu().clamp(min=fb.window_samples, max=audio.shape[1])
        feats, feat_lengths = self.model.features(audio, lengths)
        pieces, out_lengths = [], 0
        for start in range(0, feats.shape[1], self.chunk_frames):
            chunk = feats[:, start:start + self.chunk_frames]
            chunk_lengths = (feat_lengths - start).clamp(min=0, max=chunk.shape[1])
            with autocast(self.precision, chunk.device):
                out = self.model.encoder(chunk, chunk_lengths)
            pieces.append(self.select(out).float())
            out_lengths = out_lengths + out.lengths
        return torch.cat(pieces, dim=1), out_lengths


def load_model(model_file_path="", layer=None, chunk_seconds=DEFAULT_CHUNK_SECONDS, precision="fp32"):
    """HEAR entry point: the export (file or Hugging Face directory) wrapped as a HearModel (eval mode).

    precision: fp32 (default, what the validator gets), bf16 (autocast of the encoder; the fbank
    and the returned embeddings stay float32) or auto (bf16 where the hardware has bf16 matrix units).
    """
    from usad2.errors import CheckpointError
    from usad2.models.export import load_export

    if not model_file_path:
        raise CheckpointError("usad2.hear.load_model needs the path of a usad2 export (the validator's --model)")
    return HearModel(load_export(model_file_path), layer=layer, chunk_seconds=chunk_seconds, precision=precision)


def get_timestamp_embeddings(audio, model):
    """(embeddings (n_sounds, T, D) float32, timestamps (n_sounds, T) in ms: frame centres)."""
    with torch.no_grad():
        emb = model(audio)
    ts = model.frame_centres_ms(emb.shape[1], audio.shape[-1]).to(emb.device, torch.float32)
    return emb.float(), ts.unsqueeze(0).expand(emb.shape[0], -1).contiguous()


def get_scene_embeddings(audio, model):
    """(n_sounds, D) float32: the mean over time of the timestamp embeddings."""
    emb, _ = get_timestamp_embeddings(audio, model)
    return emb.mean(dim=1)


# the names this module had before it followed the HEAR API's
timestamp_embeddings = get_timestamp_embeddings
scene_embeddings = get_scene_embeddings
