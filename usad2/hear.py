"""HEAR 2021 API for a usad2 export: `load_model`, `scene_embeddings`, `timestamp_embeddings`.

    import usad2.hear as hear
    model = hear.load_model("exp/tag/export/model.pt")        # layer=None: layer average
    emb, ts = hear.timestamp_embeddings(audio, model)         # audio (n_sounds, n_samples), 16 kHz

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
context. Sounds shorter than one 25 ms window are zero-padded to one window.
"""
import torch
from torch import nn

from usad2.errors import AudioError

sample_rate = 16000
DEFAULT_CHUNK_SECONDS = 30.0


class HearModel(nn.Module):
    """A Usad2Model plus the attributes the HEAR API asks for."""

    sample_rate = sample_rate

    def __init__(self, model, layer=None, chunk_seconds=DEFAULT_CHUNK_SECONDS):
        super().__init__()
        if model.fbank_config.sample_rate != sample_rate:
            raise AudioError(f"HEAR audio is {sample_rate} Hz but the model expects {model.fbank_config.sample_rate} Hz")
        if layer is not None and not 0 <= layer <= model.config.num_layers:
            raise ValueError(f"layer must be in 0..{model.config.num_layers} or None, got {layer}")
        self.model = model.eval()
        self.layer = layer
        stride = model.config.time_stride
        frames = int(chunk_seconds * 1000 / model.fbank_config.frame_shift_ms)
        self.chunk_frames = max(stride, frames - frames % stride)
        self.embedding_size = model.config.d_model
        self.scene_embedding_size = self.embedding_size
        self.timestamp_embedding_size = self.embedding_size

    def frame_centres_ms(self, num_frames):
        """Centre in ms of output frames 0..num_frames-1 (see the module docstring)."""
        fb = self.model.fbank_config
        t = torch.arange(num_frames, dtype=torch.float64)
        return fb.frame_length_ms / 2 + fb.frame_shift_ms * self.model.config.time_stride * t

    def select(self, output):
        """The chosen feature from an EncoderOutput: (B, T, D)."""
        if self.layer is not None:
            return output.hidden_states[self.layer]
        return torch.stack(output.hidden_states[1:], dim=0).mean(dim=0)

    def forward(self, audio):
        """(n_sounds, n_samples) -> (n_sounds, T, D), chunked along fbank frames."""
        fb = self.model.fbank_config
        if audio.dim() != 2:
            raise AudioError(f"HEAR audio must be (n_sounds, n_samples), got shape {tuple(audio.shape)}")
        if audio.shape[1] < fb.window_samples:
            audio = torch.nn.functional.pad(audio, (0, fb.window_samples - audio.shape[1]))
        feats, lengths = self.model.features(audio)
        pieces = []
        for start in range(0, feats.shape[1], self.chunk_frames):
            chunk = feats[:, start:start + self.chunk_frames]
            chunk_lengths = (lengths - start).clamp(min=0, max=chunk.shape[1])
            pieces.append(self.select(self.model.encoder(chunk, chunk_lengths)))
        return torch.cat(pieces, dim=1)


def load_model(model_file_path="", layer=None, chunk_seconds=DEFAULT_CHUNK_SECONDS):
    """HEAR entry point: the export at `model_file_path` wrapped as a HearModel (eval mode)."""
    from usad2.models.export import load_export

    return HearModel(load_export(model_file_path), layer=layer, chunk_seconds=chunk_seconds)


def timestamp_embeddings(audio, model):
    """(embeddings (n_sounds, T, D), timestamps (n_sounds, T) in ms, frame centres)."""
    with torch.no_grad():
        emb = model(audio)
    ts = model.frame_centres_ms(emb.shape[1]).to(emb.device, torch.float32)
    return emb, ts.unsqueeze(0).expand(emb.shape[0], -1).contiguous()


def scene_embeddings(audio, model):
    """(n_sounds, D): the mean over time of the timestamp embeddings."""
    emb, _ = timestamp_embeddings(audio, model)
    return emb.mean(dim=1)
