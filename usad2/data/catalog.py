"""Utterance metadata for batching: ids, full lengths in 16 kHz samples, weights, domains, labels.

The training and evaluation pipelines plan every batch from this table alone (no audio is read
while planning), so all ranks of a distributed run can build identical global batches cheaply.

Where the length of an utterance comes from, in order of preference:
1. `utt2num_samples` (samples at 16 kHz: the format stage writes 16 kHz audio),
2. `utt2dur` (seconds, rounded to samples),
3. the `segments` line when it has an end time,
4. the audio file header (slow on large corpora: a warning says how many headers were read).

Labels: every generic `utt2<label>` file (not utt2spk/utt2dur/... which have their own meaning)
plus `utt2spk` as label `spk`; a label value is its tokens joined by one space, or None for an
utterance the (partial) label file does not cover.

Domains (`domain_source`, docs/method.md §3.5): `labels` reads utt2domain (a missing file or
utterance is `unknown`); `infer` reads the posteriors of utt2domain_post (written by
`usad2.bin.infer_domains`), one (p_speech, p_audio, p_music) tuple per utterance; `mixed` keeps
the label where utt2domain has a known one and takes the posterior elsewhere. A domain entry is
therefore a label string or a posterior tuple; the distillation weights accept both.
"""
import dataclasses
import hashlib
import logging
from typing import Optional

import numpy as np

from usad2.audio.io import SAMPLE_RATE, audio_info
from usad2.data.datadir import AudioSource, load_data_dir
from usad2.data.kinds import LABEL_KIND, kind_for
from usad2.errors import DataDirError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Catalog:
    """Per-utterance metadata, index-aligned: `utts[i]` has `lengths[i]` samples, and so on."""

    utts: list
    lengths: np.ndarray  # int64, full utterance length in 16 kHz samples
    weights: Optional[np.ndarray]  # float64 sampling masses from utt2weight, None without it
    domains: list  # per utterance: a label (speech|audio|music|unknown) or a posterior tuple
    sources: list  # AudioSource per utterance
    labels: dict  # label name -> list of str or None
    where: str = "<in memory>"
    allow_pipes: bool = False
    _digest: Optional[str] = dataclasses.field(default=None, repr=False, compare=False)

    def __len__(self):
        return len(self.utts)

    def subset(self, indices):
        """A Catalog of the utterances at `indices` (in that order)."""
        idx = [int(i) for i in indices]
        return Catalog(
            utts=[self.utts[i] for i in idx],
            lengths=self.lengths[idx].copy(),
            weights=None if self.weights is None else self.weights[idx].copy(),
            domains=[self.domains[i] for i in idx],
            sources=[self.sources[i] for i in idx],
            labels={k: [v[i] for i in idx] for k, v in self.labels.items()},
            where=self.where, allow_pipes=self.allow_pipes)

    def digest(self):
        """A short hash of ids, lengths and weights: a saved data state fits only this catalog."""
        if self._digest is not None:
            return self._digest
        h = hashlib.sha1()
        h.update("\n".join(self.utts).encode("utf-8"))
        h.update(np.ascontiguousarray(self.lengths, dtype=np.int64).tobytes())
        if self.weights is not None:
            h.update(np.ascontiguousarray(self.weights, dtype=np.float64).tobytes())
        self._digest = h.hexdigest()[:16]
        return self._digest


DOMAIN_SOURCES = ("labels", "infer", "mixed")


def load_catalog(data_dir, allow_pipes=False, domain_source="labels"):
    """Read the data dir at `data_dir` (or use a DataDir object) into a Catalog."""
    data = data_dir if hasattr(data_dir, "tables") else load_data_dir(data_dir,
                                                                      allow_pipes=allow_pipes)
    where = data.source_dir or "<in memory>"
    utts = data.utt_ids
    if not utts:
        raise DataDirError(f"data dir {where}: no utterances")
    sources = [data.source(u) for u in utts]
    lengths = _lengths(data, utts, sources, where, allow_pipes)
    weight_table = data.table("utt2weight")
    weights = None
    if weight_table is not None:
        weights = np.array([weight_table[u] for u in utts], dtype=np.float64)
    labels = {}
    for name in sorted(data.tables):
        if kind_for(name) is LABEL_KIND:
            labels[name[len("utt2"):]] = _label_values(data.table(name), utts)
    if data.utt2spk is not None:
        labels.setdefault("spk", [data.utt2spk.get(u) for u in utts])
    return Catalog(utts, lengths, weights, resolve_domains(data, utts, domain_source, where),
                   sources, labels, where, allow_pipes)


def resolve_domains(data, utts, domain_source, where="<in memory>"):
    """Each utterance's domain for `domain_source` (see the module docstring)."""
    if domain_source not in DOMAIN_SOURCES:
        raise DataDirError(f"domain source {domain_source!r} is not one of {', '.join(DOMAIN_SOURCES)}")
    labels = [data.domain(u) for u in utts]
    if domain_source == "labels":
        return labels
    posteriors = data.table("utt2domain_post")
    needed = [u for u, d in zip(utts, labels) if domain_source == "infer" or d == "unknown"]
    if needed and posteriors is None:
        raise DataDirError(f"data dir {where}: --domain_source {domain_source} needs utt2domain_post "
                           f"for {len(needed)} utterance(s) (e.g. {needed[0]!r}); run "
                           "python -m usad2.bin.infer_domains --data on it first")
    return [posteriors[u] if domain_source == "infer" or d == "unknown" else d
            for u, d in zip(utts, labels)]


def _label_values(table, utts):
    values = []
    for u in utts:
        tokens = table.get(u)
        values.append(None if tokens is None else " ".join(tokens))
    return values


def _lengths(data, utts, sources, where, allow_pipes):
    """Full lengths in samples (see the module docstring for the order of sources)."""
    num_samples = data.table("utt2num_samples")
    if num_samples is not None:
        return np.array([num_samples[u] for u in utts], dtype=np.int64)
    durations = data.table("utt2dur")
    if durations is not None:
        return np.array([_to_samples(durations[u]) for u in utts], dtype=np.int64)
    lengths, headers = [], 0
    for utt, src in zip(utts, sources):
        if src.end is not None:
            lengths.append(_to_samples(src.end - src.start))
            continue
        headers += 1
        lengths.append(_header_length(utt, src, allow_pipes))
    if headers:
        log.warning("%s has no utt2num_samples or utt2dur: read %d audio headers for lengths "
                    "(write utt2dur in data prep to avoid this)", where, headers)
    return np.array(lengths, dtype=np.int64)


def _header_length(utt, src: AudioSource, allow_pipes):
    rate, frames, _ = audio_info(src.path, name=utt, allow_pipes=allow_pipes)
    return max(1, _to_samples(frames / rate - src.start))


def _to_samples(seconds):
    return max(1, int(round(float(seconds) * SAMPLE_RATE)))
