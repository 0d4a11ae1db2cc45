"""Training/eval data pipelines: budgets, crops, weighted sampling, rank slices, exact resume.

Audio files are float32 ramps: sample k of utterance u is (k + 1 + offset_u) / 2**17, so a
loaded crop tells exactly which samples it came from.
"""
import collections
import os

import numpy as np
import pytest
import soundfile
import torch

from usad2.data.datadir import DataDir
from usad2.data.pipeline import Batch, EvalPipeline, TrainPipeline
from usad2.data.plan import Planner
from usad2.data.catalog import load_catalog
from usad2.errors import AudioError, ConfigError

SR = 16000
SCALE = 2.0 ** 17


def _ramp(offset, n):
    return ((np.arange(n) + 1 + offset) / SCALE).astype(np.float32)


def _write_dir(root, durations, *, domains=None, weights=None, labels=None, dur_file=True,
               name="data"):
    """A data dir of float32 ramp wavs; returns its path and {utt: (offset, num samples)}."""
    wav_dir = os.path.join(root, name + "_wav")
    os.makedirs(wav_dir, exist_ok=True)
    wav_scp, utt2dur, info = {}, {}, {}
    for i, dur in enumerate(durations):
        utt = f"u{i:03d}"
        n = int(round(dur * SR))
        offset = 1000 * i
        path = os.path.join(wav_dir, utt + ".wav")
        soundfile.write(path, _ramp(offset, n), SR, subtype="FLOAT")
        wav_scp[utt], utt2dur[utt], info[utt] = path, n / SR, (offset, n)
    tables = {}
    if dur_file:
        tables["utt2dur"] = utt2dur
    if domains:
        tables["utt2domain"] = {u: domains[i] for i, u in enumerate(sorted(wav_scp))}
    if weights is not None:
        tables["utt2weight"] = {u: weights[i] for i, u in enumerate(sorted(wav_scp))}
    tables.update(labels or {})
    out = os.path.join(root, name)
    DataDir(wav_scp, **tables).write(out)
    return out, info


def _meta_dir(root, lengths_s, weights=None):
    """A metadata-only data dir (audio files never read): wav.scp paths need not exist."""
    utts = [f"m{i:04d}" for i in range(len(lengths_s))]
    tables = {"utt2dur": dict(zip(utts, lengths_s))}
    if weights is not None:
        tables["utt2weight"] = dict(zip(utts, weights))
    out = os.path.join(root, "meta")
    DataDir({u: f"/nonexistent/{u}.wav" for u in utts}, **tables).write(out)
    return out


def _key(batch):
    """Comparable content of a batch: (utt, crop start, length) per row."""
    return [(u, int(s), int(n)) for u, s, n in zip(batch.utts, batch.crop_starts, batch.lengths)]


def _take(pipe, n):
    it = iter(pipe)
    return [next(it) for _ in range(n)]


DURS = [0.3, 0.5, 0.8, 1.2, 1.6, 2.0, 2.5, 0.4, 0.9, 1.1, 3.0, 0.6]


@pytest.fixture
def ramp_dir(tmp_path):
    domains = ["speech", "audio", "music"] * 4
    labels = {"utt2pitch": {"u001": "60", "u004": "62 64"}}
    return _write_dir(str(tmp_path), DURS, domains=domains, labels=labels)


def test_budget_crops_and_audio_content(ramp_dir):
    path, info = ramp_dir
    pipe = TrainPipeline(path, batch_seconds=2.5, crop_seconds=1.0, seed=3)
    batches = _take(pipe, 25)
    for batch in batches:
        assert isinstance(batch, Batch)
        assert batch.wavs.dtype == torch.float32 and batch.wavs.shape[0] == len(batch)
        assert int(batch.lengths.sum()) <= 2.5 * SR
        assert int(batch.lengths.max()) == batch.wavs.shape[1]
        for row, (utt, start, length) in enumerate(_key(batch)):
            offset, full = info[utt]
            assert int(batch.full_lengths[row]) == full
            assert length == min(full, SR) and 0 <= start <= full - length
            expected = torch.from_numpy(_ramp(offset + start, length))
            assert torch.equal(batch.wavs[row, :length], expected)
            assert not batch.wavs[row, length:].any()
    # crops really move: some utterance longer than 1 s is seen at different offsets
    starts = collections.defaultdict(set)
    for batch in batches:
        for utt, start, _ in _key(batch):
            starts[utt].add(start)
    assert len(starts["u010"]) > 1


def test_domains_and_labels(ramp_dir):
    path, _ = ramp_dir
    seen = set()
    for batch in _take(TrainPipeline(path, batch_seconds=8.0, crop_seconds=None, seed=0), 12):
        for utt, domain, pitch in zip(batch.utts, batch.domains, batch.labels["pitch"]):
            assert domain == ["speech", "audio", "music"][int(utt[1:]) % 3]
            assert pitch == {"u001": "60", "u004": "62 64"}.get(utt)
            seen.add(utt)
    assert {"u001", "u004", "u002"} <= seen


def test_overlong_utterance_is_cropped_to_budget(tmp_path):
    path, info = _write_dir(str(tmp_path), [3.0, 0.5])
    pipe = TrainPipeline(path, batch_seconds=1.0, crop_seconds=None, seed=1)
    for batch in _take(pipe, 6):
        assert int(batch.lengths.sum()) <= SR
        if "u000" in batch.utts:
            assert batch.utts == ["u000"] and int(batch.lengths[0]) == SR


def test_same_seed_same_batches_other_seed_differs(ramp_dir):
    path, _ = ramp_dir
    run = lambda seed: [_key(b) for b in _take(
        TrainPipeline(path, batch_seconds=2.0, crop_seconds=0.7, seed=seed, load_audio=False), 15)]
    assert run(5) == run(5)
    assert run(5) != run(6)


def test_weighted_sampling_matches_utt2weight(tmp_path):
    weights = [1.0, 2.0, 3.0, 4.0, 10.0]
    path = _meta_dir(str(tmp_path), [0.5] * 5, weights)
    pipe = TrainPipeline(path, batch_seconds=5.0, crop_seconds=1.0, seed=11, load_audio=False)
    counts = collections.Counter()
    for batch in _take(pipe, 400):  # 10 draws per batch: 4000 draws
        counts.update(batch.utts)
    total = sum(counts.values())
    assert total == 4000
    expected = np.array(weights) / sum(weights) * total
    observed = np.array([counts[f"m{i:04d}"] for i in range(5)])
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 18.47  # chi-square, 4 degrees of freedom, p = 0.001
    # without weights every utterance is drawn equally often (a shuffled pass per epoch)
    flat = TrainPipeline(path, batch_seconds=5.0, crop_seconds=1.0, seed=11,
                         use_weights=False, load_audio=False)
    flat_counts = collections.Counter(u for b in _take(flat, 100) for u in b.utts)
    assert set(flat_counts.values()) == {200}


def test_uniform_epochs_are_permutations(tmp_path):
    path = _meta_dir(str(tmp_path), [0.2 + 0.1 * i for i in range(7)], [1.0] * 7)
    planner = Planner(load_catalog(path), budget=3 * SR, crop=SR, window=6 * SR, seed=2,
                      use_weights=False)
    for epoch in range(3):
        draws = [planner._draw()[0] for _ in range(7)]
        assert sorted(draws) == list(range(7)) and planner.state["epoch"] == epoch + 1


def test_rank_slices_union_equals_single_process(ramp_dir):
    path, _ = ramp_dir
    opts = dict(batch_seconds=3.0, crop_seconds=1.0, seed=7)
    single = _take(TrainPipeline(path, **opts), 12)
    r0 = _take(TrainPipeline(path, rank=0, world_size=2, **opts), 12)
    r1 = _take(TrainPipeline(path, rank=1, world_size=2, **opts), 12)
    for full, a, b in zip(single, r0, r1):
        assert len(a) >= 1 and len(b) >= 1
        assert sorted(_key(a) + _key(b)) == sorted(_key(full))
        rows = {k: full.wavs[i, :k[2]] for i, k in enumerate(_key(full))}
        for part in (a, b):
            for i, k in enumerate(_key(part)):
                assert torch.equal(part.wavs[i, :k[2]], rows[k])


def test_world_size_needs_one_item_per_rank(ramp_dir):
    path, _ = ramp_dir
    with pytest.raises(ConfigError, match="world_size 2"):
        TrainPipeline(path, batch_seconds=1.5, crop_seconds=1.0, rank=1, world_size=2)
    with pytest.raises(ConfigError, match="rank"):
        TrainPipeline(path, rank=2, world_size=2)


def _resume_check(path, split, total, **opts):
    reference = TrainPipeline(path, **opts)
    it = iter(reference)
    head = [next(it) for _ in range(split)]
    state = reference.state_dict()
    tail = [next(it) for _ in range(total - split)]
    resumed = TrainPipeline(path, **opts)
    resumed.load_state_dict(state)
    again = _take(resumed, total - split)
    assert [_key(b) for b in again] == [_key(b) for b in tail]
    for a, b in zip(again, tail):
        assert (a.wavs is None and b.wavs is None) or torch.equal(a.wavs, b.wavs)
    return head, state


def test_exact_resume_mid_epoch(ramp_dir, tmp_path):
    path, _ = ramp_dir
    opts = dict(batch_seconds=2.0, crop_seconds=0.8, seed=4, num_workers=2, prefetch=3)
    _, state = _resume_check(path, 3, 10, **opts)
    assert state["plan"]["pos"] > 0 and state["plan"]["step"] == 3
    # the state survives torch.save / torch.load(weights_only=True)
    torch.save(state, tmp_path / "state.pt")
    assert torch.load(tmp_path / "state.pt", weights_only=True) == state


def test_exact_resume_across_epoch_boundary(ramp_dir):
    path, _ = ramp_dir
    opts = dict(batch_seconds=2.0, crop_seconds=0.8, seed=9, bucket_seconds=4.0)
    probe = TrainPipeline(path, **opts, load_audio=False)
    it = iter(probe)
    epochs = []  # epochs[i]: epoch of the next draw after i + 1 batches
    for _ in range(30):
        next(it)
        epochs.append(probe.epoch)
    split = epochs.index(1)  # after `split` batches the plan is still in epoch 0; the next crosses
    _, state = _resume_check(path, split, split + 8, **opts)
    assert state["plan"]["epoch"] == 0 and state["plan"]["pos"] > 0


def test_load_state_restarts_running_iterator(ramp_dir):
    path, _ = ramp_dir
    pipe = TrainPipeline(path, batch_seconds=2.0, crop_seconds=0.8, seed=1, load_audio=False)
    it = iter(pipe)
    first = [_key(next(it)) for _ in range(4)]
    pipe.load_state_dict(TrainPipeline(path, batch_seconds=2.0, crop_seconds=0.8, seed=1,
                                       load_audio=False).state_dict())
    assert [_key(next(it)) for _ in range(4)] == first
    assert pipe.step == 4


def test_state_from_other_options_is_refused(ramp_dir):
    path, _ = ramp_dir
    state = TrainPipeline(path, batch_seconds=2.0, seed=1, load_audio=False).state_dict()
    other = TrainPipeline(path, batch_seconds=3.0, seed=1, load_audio=False)
    with pytest.raises(ConfigError, match="budget: saved 32000, now 48000"):
        other.load_state_dict(state)
    with pytest.raises(ConfigError, match="unknown format"):
        other.load_state_dict({"step": 3})


def test_min_crop_seconds_drops_short_utterances(ramp_dir):
    path, _ = ramp_dir
    pipe = TrainPipeline(path, batch_seconds=3.0, crop_seconds=1.0, min_crop_seconds=0.55,
                         load_audio=False)
    seen = {u for b in _take(pipe, 20) for u in b.utts}
    assert seen == {f"u{i:03d}" for i, d in enumerate(DURS) if d >= 0.55}
    with pytest.raises(ConfigError, match="shorter than min_crop_seconds"):
        TrainPipeline(path, min_crop_seconds=5.0)


def test_missing_audio_names_the_utterance(tmp_path):
    path, _ = _write_dir(str(tmp_path), [0.5, 0.6])
    os.remove(os.path.join(str(tmp_path), "data_wav", "u001.wav"))
    with pytest.raises(AudioError, match="u001"):
        _take(TrainPipeline(path, batch_seconds=2.0, crop_seconds=1.0), 3)


def test_audio_shorter_than_metadata_is_an_error(tmp_path):
    path, _ = _write_dir(str(tmp_path), [0.5, 1.0])
    with open(os.path.join(path, "utt2dur"), "w") as f:
        f.write("u000 0.5\nu001 1.5\n")  # u001 really has 1.0 s
    with pytest.raises(AudioError, match="u001.*promised 24000"):
        _take(TrainPipeline(path, batch_seconds=4.0, crop_seconds=None), 2)


def test_lengths_from_headers_without_utt2dur(tmp_path):
    path, info = _write_dir(str(tmp_path), [0.5, 0.25], dur_file=False)
    found = {u: int(n) for b in _take(TrainPipeline(path, batch_seconds=1.0, crop_seconds=None), 8)
             for u, n in zip(b.utts, b.full_lengths)}
    assert found == {u: n for u, (_, n) in info.items()}


def test_eval_covers_every_utterance_once(ramp_dir):
    path, info = ramp_dir
    pipe = EvalPipeline(path, batch_seconds=3.0)
    batches = list(pipe)
    assert len(batches) == len(pipe)
    keys = [k for b in batches for k in _key(b)]
    assert sorted(k[0] for k in keys) == sorted(info)
    assert all(start == 0 and n == info[u][1] for u, start, n in keys)
    for b in batches:
        assert int(b.lengths.sum()) <= 3.0 * SR or len(b) == 1
        for i, u in enumerate(b.utts):
            assert torch.equal(b.wavs[i, :int(b.lengths[i])], torch.from_numpy(_ramp(*info[u])))
    assert [_key(b) for b in pipe] == [_key(b) for b in batches]  # re-iterable, same order
    shards = [list(EvalPipeline(path, batch_seconds=3.0, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(batches)
    union = sorted(k for shard in shards for b in shard for k in _key(b))
    assert union == sorted(keys)


def test_eval_centre_crop(ramp_dir):
    path, info = ramp_dir
    keys = [k for b in EvalPipeline(path, batch_seconds=4.0, max_seconds=1.0) for k in _key(b)]
    for utt, start, n in keys:
        full = info[utt][1]
        assert n == min(full, SR) and start == (full - n) // 2


def test_bucketing_reduces_padding(tmp_path):
    rng = np.random.default_rng(0)
    path = _meta_dir(str(tmp_path), list(rng.uniform(0.2, 4.0, 300).round(3)))

    def padding(bucket_seconds):
        pipe = TrainPipeline(path, batch_seconds=20.0, crop_seconds=None, seed=0,
                             bucket_seconds=bucket_seconds, load_audio=False)
        padded = real = 0
        for b in _take(pipe, 60):
            padded += int(b.lengths.max()) * len(b)
            real += int(b.lengths.sum())
        return 1 - real / padded

    sorted_pad, unsorted_pad = padding(None), padding(0)
    assert sorted_pad < 0.1 < unsorted_pad


def test_eval_rank_with_no_utterance_gets_empty_batch(tmp_path):
    path, info = _write_dir(str(tmp_path), [0.5, 0.4, 0.3])
    parts = [list(EvalPipeline(path, batch_seconds=5.0, rank=r, world_size=4)) for r in range(4)]
    assert [len(p) for p in parts] == [1, 1, 1, 1]
    assert [len(p[0]) for p in parts] == [1, 1, 1, 0]
    empty = parts[3][0]
    assert empty.wavs.shape == (0, 0) and empty.lengths.shape == (0,)
    assert sorted(u for p in parts for u in p[0].utts) == sorted(info)


def test_batch_to_moves_tensors(ramp_dir):
    path, _ = ramp_dir
    batch = next(iter(TrainPipeline(path, batch_seconds=2.0, crop_seconds=1.0)))
    moved = batch.to("meta")
    assert moved.wavs.device.type == "meta" and moved.lengths.device.type == "meta"
    assert moved.utts == batch.utts and batch.wavs.device.type == "cpu"
    assert abs(batch.seconds - int(batch.lengths.sum()) / SR) < 1e-9


def test_crops_of_segments_come_from_the_right_place(tmp_path):
    rec = str(tmp_path / "rec.wav")
    soundfile.write(rec, _ramp(0, 3 * SR), SR, subtype="FLOAT")
    segments = {"a": ("r", 0.5, 2.0), "b": ("r", 2.0, -1)}
    out = str(tmp_path / "seg")
    DataDir({"r": rec}, segments, utt2dur={"a": 1.5, "b": 1.0}).write(out)
    pipe = TrainPipeline(out, batch_seconds=2.0, crop_seconds=0.5, seed=2, num_workers=2)
    first = {"a": SR // 2, "b": 2 * SR}  # sample of the recording where each segment starts
    for batch in _take(pipe, 10):
        for row, (utt, start, length) in enumerate(_key(batch)):
            assert length == SR // 2
            expected = _ramp(first[utt] + start, length)
            assert torch.equal(batch.wavs[row, :length], torch.from_numpy(expected))


def test_other_sample_rates_are_resampled_to_the_planned_length(tmp_path):
    path = str(tmp_path / "w8k.wav")
    t = np.arange(8000 * 2) / 8000
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    out = str(tmp_path / "d8k")
    DataDir({"x": path}, utt2dur={"x": 2.0}).write(out)
    for batch in _take(TrainPipeline(out, batch_seconds=3.0, crop_seconds=1.0, seed=0), 3):
        assert set(batch.lengths.tolist()) == {SR}  # the one utterance, drawn several times
        rms = batch.wavs.pow(2).mean(dim=1).sqrt()
        assert torch.allclose(rms, torch.full_like(rms, 0.5 / 2 ** 0.5), atol=0.01)  # the tone
