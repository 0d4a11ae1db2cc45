"""Combine several Kaldi data dirs into one, refusing id collisions (like Kaldi's combine_data.sh).

Rules (documented choices):
- An utterance id found in two inputs is an error naming both places, unless `prefixes` make
  ids unique (each prefix is put before that input's utterance, recording and speaker ids).
- A recording id in two inputs is fine when both point at the same path (segments of one
  recording prepared separately), an error otherwise. A speaker id in two inputs is one speaker.
- When some inputs have a segments file and others do not, the others get `<utt> <utt> 0 -1`
  lines (the whole recording), as Kaldi does.
- A file that only some inputs have: utt2spk is completed with each utterance as its own
  speaker, utt2domain with `unknown`, a generic utt2<label> stays partial; any other file
  (utt2dur, utt2weight, ...) is left out of the result with a warning, as Kaldi does.
"""
import logging
import os

from usad2.data.datadir import DataDir, load_data_dir
from usad2.data.kaldi_text import DEFAULT_MAX_PROBLEMS, Problems
from usad2.data.kinds import Segment, kind_for
from usad2.errors import DataDirError

logger = logging.getLogger("usad2")

FILL = {"utt2spk": lambda utt: utt, "utt2domain": lambda utt: "unknown"}


def auto_prefixes(paths):
    """`<basename>-` for each input folder; an error when two inputs share a basename."""
    names = [os.path.basename(os.path.normpath(os.fspath(p))) for p in paths]
    if len(set(names)) != len(names):
        raise DataDirError(f"cannot derive unique id prefixes from folder names {names}; "
                           "give explicit prefixes")
    return [f"{name}-" for name in names]


def combine_datadirs(datadirs, prefixes=None, allow_pipes=False,
                     max_problems=DEFAULT_MAX_PROBLEMS):
    """Combine DataDir objects into a new one (ids prefixed when `prefixes` is given)."""
    if prefixes is not None:
        if len(prefixes) != len(datadirs):
            raise DataDirError(f"{len(prefixes)} prefixes for {len(datadirs)} data dirs")
        datadirs = [d.with_prefix(p) for d, p in zip(datadirs, prefixes)]
    problems = Problems(max_problems)
    _check_collisions(datadirs, problems)
    problems.raise_if_any("combine")
    if any(d.segments is not None for d in datadirs):
        datadirs = [_with_whole_segments(d) for d in datadirs]
    tables = {}
    for name in sorted({n for d in datadirs for n in d.tables}):
        merged = _merge_table(name, datadirs)
        if merged is not None:
            tables[name] = merged
    return DataDir._from_tables(tables, allow_pipes)


def combine_data(inputs, out, prefixes=None, allow_pipes=False):
    """Load the data dirs `inputs`, combine them and write the result to `out` atomically."""
    if prefixes == "auto":
        prefixes = auto_prefixes(inputs)
    datadirs = [load_data_dir(p, allow_pipes=allow_pipes) for p in inputs]
    combined = combine_datadirs(datadirs, prefixes, allow_pipes)
    combined.write(out)
    logger.info("combined %d data dirs into %s: %d utterances", len(inputs), out, len(combined))
    return combined


class _Places:
    """`<dir>/<file>:<line>` of an id in an input (loaded files: sorted, one line per id)."""

    def __init__(self, datadirs):
        self.datadirs = datadirs
        self.lines = {}

    def __call__(self, index, file_name, key):
        datadir = self.datadirs[index]
        if datadir.source_dir is None:
            return f"<input {index + 1}>/{file_name}"
        if (index, file_name) not in self.lines:
            self.lines[index, file_name] = {k: n for n, k in enumerate(
                sorted(datadir.tables[file_name]), 1)}
        line = self.lines[index, file_name][key]
        return f"{os.path.join(datadir.source_dir, file_name)}:{line}"


def _check_collisions(datadirs, problems):
    seen_utts, seen_recs = {}, {}
    place = _Places(datadirs)
    for index, datadir in enumerate(datadirs):
        for utt in datadir.utt_ids:
            if utt in seen_utts:
                other = seen_utts[utt]
                first = place(other, _utt_file(datadirs[other]), utt)
                here = place(index, _utt_file(datadir), utt)
                problems.add(here, None, f"utterance id {utt!r} is also in {first}; give "
                             "id prefixes (--prefixes / --prefix_ids true) to combine them")
            else:
                seen_utts[utt] = index
        for rec, path in datadir.wav_scp.items():
            if rec in seen_recs and datadirs[seen_recs[rec]].wav_scp[rec] != path:
                first = place(seen_recs[rec], "wav.scp", rec)
                problems.add(place(index, "wav.scp", rec), None,
                             f"recording id {rec!r} is also in {first} with another path")
            seen_recs.setdefault(rec, index)


def _utt_file(datadir):
    return "segments" if datadir.segments is not None else "wav.scp"


def _with_whole_segments(datadir):
    if datadir.segments is not None:
        return datadir
    tables = dict(datadir.tables)
    tables["segments"] = {utt: Segment(utt, 0.0, None) for utt in datadir.wav_scp}
    result = DataDir._from_tables(tables, datadir.allow_pipes)
    result.source_dir = datadir.source_dir
    return result


def _merge_table(name, datadirs):
    """Union of one table over the inputs, completed or dropped when some inputs lack it."""
    partial = kind_for(name).coverage == "partial"
    merged = {}
    for datadir in datadirs:
        table = datadir.tables.get(name)
        if table is None and not partial:
            if name not in FILL:
                logger.warning("combine: leaving %s out: not every input has it", name)
                return None
            table = {utt: FILL[name](utt) for utt in datadir.utt_ids}
        merged.update(table or {})
    return merged
