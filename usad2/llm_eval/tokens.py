"""Audio tokens: a probed model's layers, average-pooled in time, from the probe's feature cache.

The LLM reads every frame sequence, not a clip mean, so it needs all frames of every utterance;
at the models' own rates (fbank 100 Hz, the student 50 Hz) that is too many tokens for a CPU LM
and gigabytes of cache. `PooledModel` wraps a ProbedModel (any `--model` spec the probe
understands, built by usad2.probe.features.model_from_spec) and averages each layer's valid
frames over non-overlapping windows of `round(pool_stride * frame_rate)` frames (at least one;
a last partial window is averaged over its own frames), so every model gives about
`1 / pool_stride` tokens per second whatever its frame rate; the exact rate of each model is
`frame_rate / window` and is reported (`tokens_per_second` in details.json). The default stride
0.2 s gives 5 tokens per second: a 2.4 s demo clip becomes 12 audio tokens.

The pooled sequences are stored by the probe's own cache (`extract_features`, frames of every
utterance): the entry is `<cache>/<model name>-<hash>/...` with the pooling in the hashed
identity, so it never replaces the probe's entry of the same model, is computed once per model,
stride and data dir, and is shared between runs (`--feature_cache`).
"""
import numpy as np
import torch

from usad2.errors import ConfigError
from usad2.probe.cache import extract_features
from usad2.probe.features import ConcatProbe, ProbedModel


class PooledModel(ProbedModel):
    """A ProbedModel whose frames are averaged over windows of about `pool_stride` seconds."""

    def __init__(self, inner, pool_stride):
        if isinstance(inner, ConcatProbe):
            raise ConfigError(f"--model {inner.name}: llm_eval takes one model per spec (no concat:)")
        if not pool_stride > 0:
            raise ConfigError(f"--pool_stride must be > 0 seconds, got {pool_stride}")
        self.inner, self.pool_stride = inner, float(pool_stride)
        self.window = max(1, int(round(self.pool_stride * float(inner.frame_rate))))
        self.name, self.num_layers, self.layer_names = inner.name, inner.num_layers, inner.names()
        self.frame_rate = float(inner.frame_rate) / self.window
        # centre of pooled frame 0: the centre of the window's first and last frames
        self.frame_offset = float(inner.frame_offset) + (self.window - 1) / 2 / float(inner.frame_rate)
        self.precision = inner.precision

    def identity(self):
        return {"kind": "llm_eval_pooled", "window": self.window, "model": self.inner.cache_identity()}

    def _extract(self, wavs, lengths):
        layers, frame_lengths = self.inner.extract(wavs, lengths)
        frame_lengths = torch.as_tensor(frame_lengths, dtype=torch.long)
        return [pool_frames(x, frame_lengths, self.window) for x in layers], -(-frame_lengths // self.window)


def pool_frames(x, lengths, window):
    """(B, T, D) frames with valid lengths (B,) -> (B, ceil(T / window), D) window means of valid frames."""
    b, t, d = x.shape
    out_t = -(-t // window)
    pad = out_t * window - t
    valid = (torch.arange(t)[None, :] < lengths[:, None]).to(x.dtype)
    x = torch.nn.functional.pad(x * valid[..., None], (0, 0, 0, pad))
    valid = torch.nn.functional.pad(valid, (0, pad))
    sums = x.reshape(b, out_t, window, d).sum(2)
    counts = valid.reshape(b, out_t, window).sum(2).clamp_min(1.0)
    return sums / counts[..., None]


def token_features(model, data_dir, cache_root, force=False, fresh=None):
    """({utt: [(T, D_l) float16 array per layer]}, FeatureSet) of a PooledModel on a data dir."""
    from usad2.data.datadir import load_data_dir

    utts = load_data_dir(data_dir).utt_ids
    feats = extract_features(model, data_dir, cache_root, sorted(utts), force=force, fresh=fresh)
    empty = [u for u in utts if feats.frames[u][0].shape[0] == 0]
    if empty:
        raise ConfigError(f"{data_dir}: {model.name} gives no frames for utterance {empty[0]} "
                          f"({len(empty)} in all): too short for this model")
    return feats.frames, feats


def layer_stats(frames, num_layers):
    """Per layer (mean, std) over every token of `frames` ({utt: [arrays]}), float32 tensors (1, D)."""
    stats = []
    for layer in range(num_layers):
        x = np.concatenate([v[layer] for v in frames.values()]).astype(np.float64)
        mean, std = x.mean(0), x.std(0)
        stats.append((torch.tensor(mean, dtype=torch.float32)[None], torch.tensor(std, dtype=torch.float32)
                      .clamp_min(1e-5)[None]))
    return stats
