"""Training and evaluation batches from a Kaldi data dir: `TrainPipeline` and `EvalPipeline`.

Split of work:
- Planning (which utterances, which crops, which batch) is plain Python on metadata only
  (`usad2.data.plan`, `usad2.data.catalog`). fairseq2's `sample`/`shuffle`/`dynamic_bucket`
  operators are not used for it because their state is per process and their output depends
  on the sharding: they cannot promise that every rank builds the *same* global batch and keeps
  a slice of it (the trainer's equal-loss-curve test over ranks needs exactly that), nor does
  a dynamic bucket's buffer let a batch be "the union of rank slices". The planner is cheap
  (numpy draws per epoch, a sort per window) and its state is a few small lists.
- Loading runs in a fairseq2 data pipeline: `read_iterator` over the planner, `map` decoding a
  rank's slice of each global batch with `num_parallel_calls=num_workers` (batches decode
  concurrently), and `prefetch`. fairseq2's own state_dict is not used for resume: with
  prefetch and parallel maps it would record how far the *background* threads got. Instead
  every loaded batch carries the planner state right after it was planned, and
  `TrainPipeline.state_dict()` returns the state attached to the last batch handed to the
  caller. Loading that state replays exactly the batches an uninterrupted run would yield next,
  for any prefetch depth, worker count, and even a different world size.

Rank slicing: a rank keeps items `i % world_size == rank` of each global batch (batches are
sorted longest first, so the slices get similar lengths). The plan guarantees at least
`world_size` items per training batch when `batch_seconds >= world_size * longest crop`
(checked at construction), so no rank ever gets an empty training batch.

Audio: each item is decoded with `usad2.audio.io.load_audio` (errors name the utterance), only
its crop (`start`/`end` passed to the loader, so long files are not decoded whole where the
format can seek). When the audio is shorter than the metadata said, the shortfall is accepted up
to `LENGTH_TOLERANCE` samples (the batch then holds the real length) and is an AudioError beyond.
Threads: decoding uses numpy/soundfile/sox, and no torch intra-op threads are started here.
"""
import copy
import dataclasses
import logging
from typing import Optional

import numpy as np
import torch
from fairseq2.data.data_pipeline import read_iterator, read_sequence

from usad2.audio.io import SAMPLE_RATE, load_audio
from usad2.data.catalog import load_catalog
from usad2.data.plan import Planner
from usad2.errors import AudioError, ConfigError

log = logging.getLogger(__name__)

LENGTH_TOLERANCE = SAMPLE_RATE // 10  # samples (0.1 s) audio may fall short of utt2dur/num_samples
DEFAULT_BUCKET_FACTOR = 16  # default bucketing window = this many batch budgets (~6 % padding on
                           # uniform 0.2-4 s lengths vs ~40 % unsorted)


@dataclasses.dataclass
class Batch:
    """One rank's slice of a batch.

    utts: utterance ids; wavs: (B, N) float32 16 kHz, zero-padded (None with load_audio=False);
    lengths: (B,) long valid samples; domains: speech|audio|music|unknown, or a posterior tuple
    (p_speech, p_audio, p_music) with domain_source infer|mixed (catalog.py); crop_starts: (B,) long
    sample offset of the crop in the full utterance; full_lengths: (B,) long full utterance
    samples (metadata); labels: label name -> list of values (str or None), see catalog.py.
    """

    utts: list
    wavs: Optional[torch.Tensor]
    lengths: torch.Tensor
    domains: list
    crop_starts: torch.Tensor
    full_lengths: torch.Tensor
    labels: dict

    def __len__(self):
        return len(self.utts)

    @property
    def seconds(self):
        """Audio seconds in this batch (sum of valid lengths)."""
        return float(self.lengths.sum()) / SAMPLE_RATE

    def to(self, device, non_blocking=False):
        """A copy with the tensors on `device` (ids, domains and labels are shared)."""
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)
        return dataclasses.replace(self, wavs=move(self.wavs), lengths=move(self.lengths),
                                   crop_starts=move(self.crop_starts),
                                   full_lengths=move(self.full_lengths))


def _seconds_to_samples(seconds, what):
    if seconds is None:
        return None
    if not seconds > 0:
        raise ConfigError(f"{what} must be positive seconds, got {seconds!r}")
    return int(round(float(seconds) * SAMPLE_RATE))


def _check_rank(rank, world_size, num_workers):
    if not (isinstance(world_size, int) and world_size >= 1 and 0 <= rank < world_size):
        raise ConfigError(f"rank {rank!r} / world_size {world_size!r}: need 0 <= rank < world_size")
    if num_workers < 1:
        raise ConfigError(f"num_workers must be >= 1, got {num_workers}")


class _Loader:
    """Turns a rank's list of items into a Batch (decoding audio unless metadata-only)."""

    def __init__(self, catalog, rank, world_size, load_audio_=True):
        self.catalog, self.rank, self.world_size = catalog, rank, world_size
        self.load_audio = load_audio_

    def __call__(self, items):
        mine = items[self.rank::self.world_size]
        cat = self.catalog
        idx = [it[0] for it in mine]
        starts = torch.tensor([it[1] for it in mine], dtype=torch.long)
        planned = [it[2] for it in mine]
        wavs = None
        if self.load_audio:
            waves = [self._load(i, s, n) for i, s, n in mine]
            lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
            wavs = torch.zeros(len(waves), int(lengths.max()) if waves else 0)
            for row, wave in enumerate(waves):
                wavs[row, :len(wave)] = wave
        else:
            lengths = torch.tensor(planned, dtype=torch.long)
        return Batch(
            utts=[cat.utts[i] for i in idx], wavs=wavs, lengths=lengths,
            domains=[cat.domains[i] for i in idx], crop_starts=starts,
            full_lengths=torch.tensor([int(cat.lengths[i]) for i in idx], dtype=torch.long),
            labels={name: [values[i] for i in idx] for name, values in cat.labels.items()})

    def _load(self, index, start, length):
        """Decode `length` samples of utterance `index` from sample `start` of the utterance."""
        utt, src = self.catalog.utts[index], self.catalog.sources[index]
        full = int(self.catalog.lengths[index])
        if start == 0 and length == full and src.start == 0 and src.end is None:
            wave = load_audio(src.path, name=utt, allow_pipes=self.catalog.allow_pipes)
        else:
            a = src.start + start / SAMPLE_RATE
            wave = load_audio(src.path, name=utt, allow_pipes=self.catalog.allow_pipes,
                              start=a, end=a + length / SAMPLE_RATE)
        if len(wave) < length - LENGTH_TOLERANCE:
            raise AudioError(
                f"utterance {utt!r} ({src.path}): audio has {len(wave)} samples from offset "
                f"{start}, metadata ({self.catalog.where}) promised {length} of {full}; "
                "regenerate utt2dur/utt2num_samples")
        return wave[:length]


class TrainPipeline:
    """Endless training batches: weighted sampling, random crops, bucketing, rank slices.

    Iterate it (`for batch in pipe`); epochs repeat forever, each drawn afresh from (seed, epoch).
    An epoch is N draws of the utterance stream; a bucketing window can straddle two epochs, so
    `epoch` is the epoch of the next draw rather than a boundary between batches.
    `state_dict()` is the position after the last batch yielded (save it with the checkpoint of
    the step that consumed that batch); `load_state_dict(state)` makes
    the next batch the one an uninterrupted pipeline would yield (an iterator that is already
    running restarts from the loaded state at its next step). Use one iterator at a time.

    batch_seconds: budget of cropped audio per *global* batch (all ranks together).
    crop_seconds: random crop length (None: no crop other than the batch budget).
    bucket_seconds: length-sorting window (None: 16 batch budgets; 0: no sorting).
    min_crop_seconds: utterances shorter than this are left out (the frontend needs frames).
    load_audio: False yields metadata-only batches (wavs None, lengths = planned crop lengths).
    domain_source: labels, infer or mixed: what `Batch.domains` holds (catalog.py).
    """

    def __init__(self, data_dir, *, batch_seconds=80.0, crop_seconds=10.0, seed=0, rank=0,
                 world_size=1, use_weights=True, allow_pipes=False, num_workers=1,
                 bucket_seconds=None, min_crop_seconds=0.1, prefetch=2, load_audio=True,
                 domain_source="labels"):
        _check_rank(rank, world_size, num_workers)
        budget = _seconds_to_samples(batch_seconds, "batch_seconds")
        crop = _seconds_to_samples(crop_seconds, "crop_seconds")
        if bucket_seconds is None:
            window, sort = DEFAULT_BUCKET_FACTOR * budget, True
        elif bucket_seconds == 0:
            window, sort = budget, False
        else:
            window, sort = _seconds_to_samples(bucket_seconds, "bucket_seconds"), True
        catalog = _drop_short(load_catalog(data_dir, allow_pipes, domain_source), min_crop_seconds)
        if use_weights and catalog.weights is None:
            log.info("%s has no utt2weight: sampling uniformly (a shuffled pass per epoch)",
                     catalog.where)
        self.planner = Planner(catalog, budget=budget, crop=crop, window=window, seed=seed,
                               use_weights=use_weights, sort=sort)
        self._check_slices(world_size)
        self.catalog, self.rank, self.world_size = catalog, rank, world_size
        self.num_workers, self.prefetch = num_workers, prefetch
        self._loader = _Loader(catalog, rank, world_size, load_audio)
        self._state = self.planner.state_dict()
        self._generation = 0
        log.info("train pipeline %s: %d utterances (%.2f h), %s sampling, batch %g s, crop %s, "
                 "bucket window %g s, rank %d of %d", catalog.where, len(catalog),
                 catalog.lengths.sum() / SAMPLE_RATE / 3600,
                 "weighted" if self.planner.probs is not None else "uniform", batch_seconds,
                 f"{crop_seconds:g} s" if crop_seconds else "none",
                 self.planner.window / SAMPLE_RATE if sort else 0, rank, world_size)

    def _check_slices(self, world_size):
        longest = int(min(self.planner.crop, self.planner.catalog.lengths.max()))
        if world_size > 1 and self.planner.budget < world_size * longest:
            raise ConfigError(
                f"batch_seconds {self.planner.budget / SAMPLE_RATE:g} is less than world_size "
                f"{world_size} x the longest crop ({longest / SAMPLE_RATE:g} s): some rank could "
                "get an empty batch; raise batch_seconds or lower crop_seconds")

    # ---- state -----------------------------------------------------------------------------
    def state_dict(self):
        """Position after the last batch yielded (plain dicts/lists/ints: torch.save-able)."""
        return _copy_state(self._state)

    def load_state_dict(self, state):
        """Continue from `state` (from `state_dict()`, possibly of another world size)."""
        self._fresh_planner(state)  # validates before anything changes
        self._state = _copy_state(state)
        self._generation += 1

    @property
    def step(self):
        """Number of global batches yielded so far (over all epochs, counting resumed ones)."""
        return self._state["plan"]["step"]

    @property
    def epoch(self):
        """Epoch of the next draw."""
        return self._state["plan"]["epoch"]

    def _fresh_planner(self, state):
        """A new Planner with this pipeline's options, positioned at `state`."""
        p = self.planner
        planner = Planner(p.catalog, budget=p.budget, crop=p.crop, window=p.window, seed=p.seed,
                          use_weights=p.probs is not None, sort=p.sort)
        planner.load_state_dict(state)
        return planner

    # ---- iteration -------------------------------------------------------------------------
    def __iter__(self):
        while True:
            generation = self._generation
            pipeline = self._build(self._state)
            for batch, state in pipeline:
                if generation != self._generation:
                    break  # load_state_dict was called: restart from the loaded state
                self._state = state
                yield batch

    def _build(self, state):
        planner = self._fresh_planner(state)

        def plans(p):
            while True:
                items = p.next_batch()
                yield items, p.state_dict()

        loader = self._loader
        return (read_iterator(plans(planner), lambda it: it, infinite=True,
                              skip_pickling_check=True)
                .map(lambda pair: (loader(pair[0]), pair[1]),
                     num_parallel_calls=self.num_workers)
                .prefetch(self.prefetch)
                .and_return())


class EvalPipeline:
    """Every utterance exactly once, in a fixed order, for dev loss and feature extraction.

    Utterances are sorted longest first (then by id) and cut into batches of at most
    `batch_seconds` (a single utterance longer than that forms a batch of its own). With
    `max_seconds`, longer utterances keep a centred window of that length. Each rank keeps items
    `i % world_size == rank` of every batch, so all ranks run the same number of steps; a rank's
    slice is empty (B = 0) only where a batch has fewer utterances than ranks (the last batches
    of a tiny set). Re-iterable; each pass is identical.
    """

    def __init__(self, data_dir, *, batch_seconds, max_seconds=None, rank=0, world_size=1,
                 allow_pipes=False, num_workers=1, prefetch=2, load_audio=True, domain_source="labels"):
        _check_rank(rank, world_size, num_workers)
        budget = _seconds_to_samples(batch_seconds, "batch_seconds")
        limit = _seconds_to_samples(max_seconds, "max_seconds")
        self.catalog = load_catalog(data_dir, allow_pipes, domain_source)
        self.batches = _eval_batches(self.catalog, budget, limit)
        self.num_workers, self.prefetch = num_workers, prefetch
        self._loader = _Loader(self.catalog, rank, world_size, load_audio)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        pipeline = (read_sequence(self.batches)
                    .map(self._loader, num_parallel_calls=self.num_workers)
                    .prefetch(self.prefetch)
                    .and_return())
        return iter(pipeline)


def _eval_batches(catalog, budget, limit):
    """Global eval batches of items (index, start, length): longest first, centre crops."""
    order = sorted(range(len(catalog)), key=lambda i: (-int(catalog.lengths[i]), catalog.utts[i]))
    batches, current, used = [], [], 0
    for i in order:
        full = int(catalog.lengths[i])
        length = min(full, limit) if limit else full
        item = (i, (full - length) // 2, length)
        if current and used + length > budget:
            batches.append(current)
            current, used = [], 0
        current.append(item)
        used += length
    if current:
        batches.append(current)
    return batches


def _drop_short(catalog, min_seconds):
    """The catalog without utterances shorter than `min_seconds` (logged); error if none is left."""
    if not min_seconds:
        return catalog
    keep = np.flatnonzero(catalog.lengths >= min_seconds * SAMPLE_RATE)
    if len(keep) == len(catalog):
        return catalog
    if len(keep) == 0:
        raise ConfigError(f"{catalog.where}: every utterance is shorter than min_crop_seconds "
                          f"{min_seconds:g}")
    log.warning("%s: %d of %d utterances are shorter than %g s and are not used for training",
                catalog.where, len(catalog) - len(keep), len(catalog), min_seconds)
    return catalog.subset(keep)


def _copy_state(state):
    return copy.deepcopy(state)
