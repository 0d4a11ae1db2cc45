"""The probe's feature cache: a probed model's features on a data dir, computed once.

Cache: `<cache_root>/<model name>-<hash of its identity>/<data dir name>-<hash of its path>/`
(so experiments can share one cache: teachers and baselines are computed once, each student
and each corpus gets its own) holds `pooled.npz` (per layer the mean over
valid frames of every utterance, float32) and `frames.npz` (per layer the frames of the
utterances a frame-level task needs, float16, concatenated with offsets), plus a `.done` stamp
whose fingerprint covers the model's identity, the data dir's index files and the frame list,
so reruns reuse the features and any change recomputes them. An entry whose frames cover the
frame list asked for is reused as it is (a run with fewer frame tasks reads it); one that does
not is recomputed with the union of both lists, so an entry's frames only ever grow. A
ConcatProbe's features are assembled from its parts' cached ones (`concat_features`).
"""
import dataclasses
import hashlib
import json
import logging
import os

import numpy as np
import torch

from usad2.audio.io import load_audio
from usad2.data.datadir import load_data_dir
from usad2.probe.features import SAMPLE_RATE, ConcatProbe
from usad2.utils.atomic import atomic_dir
from usad2.utils.stamp import fingerprint, is_done, mark_done

logger = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclasses.dataclass
class FeatureSet:
    """Features of one data dir: pooled[l] (N, D_l) and frames[utt] = [(T, D_l) per layer]."""

    utt_ids: list
    pooled: list
    frames: dict
    layer_names: list
    frame_rate: float
    frame_offset: float
    groups: list = None  # one group id per layer (ConcatProbe), else None

    def rows(self, utts):
        """Row indices of `utts` in the pooled arrays."""
        index = {u: i for i, u in enumerate(self.utt_ids)}
        return np.array([index[u] for u in utts], dtype=np.int64)


def _batches(data, utts, batch_seconds, max_batch):
    """Utterances in duration order (utt2dur when present), grouped to bound padded audio."""
    durs = data.table("utt2dur") or {}
    order = sorted(utts, key=lambda u: (durs.get(u, 0.0), u))
    batch, longest = [], 0.0
    for utt in order:
        dur = durs.get(utt, batch_seconds)
        if batch and (len(batch) >= max_batch or max(longest, dur) * (len(batch) + 1) > batch_seconds):
            yield batch
            batch, longest = [], 0.0
        batch.append(utt)
        longest = max(longest, dur)
    if batch:
        yield batch


def _load_batch(data, utts):
    waves = []
    for utt in utts:
        src = data.source(utt)
        waves.append(load_audio(src.path, SAMPLE_RATE, name=utt, allow_pipes=data.allow_pipes,
                                start=src.start if src.start else None, end=src.end))
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    padded = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        padded[i, : len(w)] = w
    return padded, lengths


def _compute(model, data, frame_utts, batch_seconds, max_batch):
    """Run the model over a data dir: pooled means for all, frames for `frame_utts`."""
    utts = data.utt_ids
    want_frames = set(frame_utts)
    pooled = {u: None for u in utts}
    frames = {}
    done = 0
    for batch in _batches(data, utts, batch_seconds, max_batch):
        wavs, lengths = _load_batch(data, batch)
        layers, frame_lengths = model.extract(wavs, lengths)
        for i, utt in enumerate(batch):
            n = int(frame_lengths[i])
            if n == 0:
                logger.warning("%s: utterance %s gives no frames; its features are zeros", model.name, utt)
            per_layer = [x[i, :n].cpu().numpy() for x in layers]
            pooled[utt] = [f.mean(axis=0) if n else np.zeros(f.shape[-1], np.float32) for f in per_layer]
            if utt in want_frames:
                frames[utt] = [f.astype(np.float16) for f in per_layer]
        done += len(batch)
        logger.debug("%s: %d/%d utterances", model.name, done, len(utts))
    pooled_arrays = [np.stack([pooled[u][l] for u in utts]).astype(np.float32)
                     for l in range(len(layers))]
    return utts, pooled_arrays, frames


def _save(path, utts, pooled, frames):
    with atomic_dir(path) as tmp:
        np.savez(os.path.join(tmp, "pooled.npz"), utt_ids=np.array(utts),
                 **{f"layer{l}": x for l, x in enumerate(pooled)})
        futts = sorted(frames)
        counts = np.array([frames[u][0].shape[0] for u in futts], dtype=np.int64)
        arrays = {}
        for l in range(len(pooled)):
            parts = [frames[u][l] for u in futts]
            arrays[f"layer{l}"] = (np.concatenate(parts) if parts
                                   else np.zeros((0, pooled[l].shape[1]), np.float16))
        np.savez(os.path.join(tmp, "frames.npz"), utt_ids=np.array(futts, dtype=str), counts=counts, **arrays)


def _load(path, num_layers):
    with np.load(os.path.join(path, "pooled.npz"), allow_pickle=False) as z:
        utts = [str(u) for u in z["utt_ids"]]
        pooled = [z[f"layer{l}"] for l in range(num_layers)]
    with np.load(os.path.join(path, "frames.npz"), allow_pickle=False) as z:
        futts = [str(u) for u in z["utt_ids"]]
        bounds = np.concatenate([[0], np.cumsum(z["counts"])])
        layers = [z[f"layer{l}"] for l in range(num_layers)]
    frames = {u: [x[bounds[i]:bounds[i + 1]] for x in layers] for i, u in enumerate(futts)}
    return utts, pooled, frames


def entry_name(data_dir):
    """The cache folder of a model's features on `data_dir`: its name and a hash of its absolute
    path, so that two corpora with the same split names (dump/raw/dev, dump_mf/raw/dev) share a
    cache without meeting."""
    where = hashlib.sha256(os.path.abspath(data_dir).encode()).hexdigest()[:8]
    return f"{os.path.basename(os.path.normpath(data_dir))}-{where}"


def extract_features(model, data_dir, cache_root, frame_utts=(), batch_seconds=60.0, max_batch=16,
                     force=False, fresh=None):
    """The FeatureSet of `model` on `data_dir`, computed once and then read from the cache.

    `fresh`: a set of cache paths (re)computed in this run; with `force`, a path already in it is
    read rather than computed again (a teacher probed alone and inside a ConcatProbe is
    extracted once). A ConcatProbe is assembled from its parts' FeatureSets.
    """
    if isinstance(model, ConcatProbe):
        sets = [extract_features(p, data_dir, cache_root, frame_utts, batch_seconds, max_batch, force, fresh)
                for p in model.parts]
        return concat_features(model, sets)
    data_dir = os.fspath(data_dir)
    identity = hashlib.sha256(json.dumps(model.cache_identity(), sort_keys=True, default=str).encode()).hexdigest()
    path = os.path.join(cache_root, f"{model.name}-{identity[:10]}", entry_name(data_dir))
    def entry_fingerprint(frame_list):
        return fingerprint({"version": CACHE_VERSION, "model": model.cache_identity(), "frames": sorted(frame_list),
                            "data_dir": os.path.abspath(data_dir)}, inputs=[data_dir])

    wanted = set(frame_utts)
    fresh = set() if fresh is None else fresh
    stored = None if force and path not in fresh else _valid_frame_list(path, entry_fingerprint)
    if stored is None or not wanted <= stored:
        data = load_data_dir(data_dir)
        frame_list = sorted(wanted | (stored or set()))
        logger.info("features: %s on %s (%d utterances, frames of %d) -> %s", model.name, data_dir,
                    len(data), len(frame_list), path)
        utts, pooled, frames = _compute(model, data, frame_list, batch_seconds, max_batch)
        _save(path, utts, pooled, frames)
        mark_done(path, entry_fingerprint(frame_list), {"model": model.name, "data_dir": data_dir})
        fresh.add(path)
    else:
        logger.info("features: %s on %s: cached in %s", model.name, data_dir, path)
    utts, pooled, frames = _load(path, model.num_layers)
    frames = {u: x for u, x in frames.items() if u in wanted}
    return FeatureSet(utts, pooled, frames, model.names(), model.frame_rate, model.frame_offset)


def _valid_frame_list(path, entry_fingerprint):
    """The set of utterances whose frames the complete entry at `path` holds, or None when the
    entry is missing, unfinished or stamped for another model, data dir or version."""
    if not os.path.isfile(os.path.join(path, "frames.npz")):
        return None
    try:
        with np.load(os.path.join(path, "frames.npz"), allow_pickle=False) as z:
            stored = [str(u) for u in z["utt_ids"]]
    except (OSError, ValueError, KeyError):
        return None
    return set(stored) if is_done(path, entry_fingerprint(stored)) else None


def _hold_frames(frames, rate, offset, times):
    """Rows of (T, D) `frames` (at `rate`, frame 0 centred at `offset`) nearest each time in `times`."""
    if frames.shape[0] == 0:
        return np.zeros((len(times), frames.shape[1]), frames.dtype)
    index = np.clip(np.rint((times - offset) * rate), 0, frames.shape[0] - 1).astype(np.int64)
    return frames[index]


def concat_features(model, sets):
    """The FeatureSet of a ConcatProbe from its parts' FeatureSets (same data dir, same frame list)."""
    utts = sets[0].utt_ids
    pooled = [x[fs.rows(utts)] for fs in sets for x in fs.pooled]
    grid = next(i for i, p in enumerate(model.parts) if p.frame_rate == model.frame_rate)
    frames = {}
    for utt in sets[0].frames:
        count = sets[grid].frames[utt][0].shape[0]
        times = model.frame_offset + np.arange(count, dtype=np.float64) / model.frame_rate
        frames[utt] = [_hold_frames(x, fs.frame_rate, fs.frame_offset, times)
                       for fs in sets for x in fs.frames[utt]]
    return FeatureSet(list(utts), pooled, frames, model.names(), model.frame_rate, model.frame_offset,
                      list(model.groups))
