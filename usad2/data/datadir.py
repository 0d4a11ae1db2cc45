"""Kaldi-style data dirs in memory: load, query, subset, prefix and write (atomically).

A data dir is a folder of text tables (see `usad2.data.kinds` for the files and their lines).
`load_data_dir` reads and validates every file usad2 knows and raises one DataDirError listing
every problem as `<file>:<line>: <problem>`; `DataDir.write` first checks the text it is about to
write with the same reader, then replaces the whole folder at once (`atomic_dir`), so a reader
never sees a half-written or half-updated data dir.

Documented choices:
- wav.scp: the path is the rest of the line after the id, so paths with inner spaces work (as in
  Kaldi and ESPnet); leading/trailing spaces cannot be represented. Relative paths are relative
  to the working directory (the recipe directory), as in Kaldi. Kaldi pipes (`cmd |`) are refused
  unless `allow_pipes=True`; usad2 never runs them itself here, the audio loader decides. Other
  Kaldi rxfilename forms (`-`, `foo.ark:123`) are not supported and read as plain paths.
- utt2spk and spk2utt: either may be present, the other is derived; `write` writes both.
  Speaker ids need not be prefixes of utterance ids (Kaldi's recommendation is not enforced).
- utt2spk, utt2dur, utt2num_samples, utt2domain, utt2domain_post, utt2domain_mix, utt2weight
  and text must cover every utterance when present; a generic `utt2<label>` may cover a subset (a label that only some
  utterances have), but may not name unknown utterances.
- `write` replaces the folder: files usad2 does not read (feats.scp, a `.done` stamp...) do not
  survive; it refuses to replace an existing non-empty folder that has no wav.scp.
- CRLF line endings and non-UTF-8 bytes are rejected (see `usad2.data.kaldi_text`).
"""
import dataclasses
import os
import re
from typing import Optional

from usad2.data.consistency import DEFAULT_TOLERANCE, check_tables, is_pipe, parse_table
from usad2.data.kaldi_text import DEFAULT_MAX_PROBLEMS, Problems, split_fields
from usad2.data.kinds import DOMAINS, KINDS, LABEL_KIND, Segment, kind_for
from usad2.errors import DataDirError
from usad2.utils.atomic import atomic_dir

__all__ = ["DataDir", "AudioSource", "Segment", "DOMAINS", "load_data_dir", "is_pipe"]

_ID = re.compile(r"[^ \t\x00-\x1f\x7f\ufeff]+")
_BAD_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ufeff]")


@dataclasses.dataclass(frozen=True)
class AudioSource:
    """Where an utterance's audio is: a file path (or pipe command) and an optional time slice."""

    path: str
    start: float = 0.0
    end: Optional[float] = None
    is_pipe: bool = False


class DataDir:
    """A Kaldi data dir held as tables (file name -> {id: value}); spk2utt is derived.

    Build one in code with `DataDir(wav_scp, segments=None, utt2spk=..., utt2domain=..., ...)`:
    `segments` values may be `Segment`s or `(recording, start, end)` tuples (end -1 or None =
    to the end); `utt2<label>` values may be strings (split on spaces) or token sequences.
    """

    def __init__(self, wav_scp, segments=None, *, allow_pipes=False, **tables):
        self.allow_pipes = allow_pipes
        self.source_dir = None
        spk2utt = tables.pop("spk2utt", None)
        given = {"wav.scp": wav_scp, "segments": segments, **tables}
        self.tables = {}
        for name, table in given.items():
            if table is not None:
                self.tables[name] = _coerce_table(name, table)
        if spk2utt is not None:
            self._set_speakers_from_spk2utt(spk2utt)

    @classmethod
    def _from_tables(cls, tables, allow_pipes):
        """Wrap already parsed and validated tables without re-coercing them."""
        data = cls.__new__(cls)
        data.allow_pipes, data.source_dir, data.tables = allow_pipes, None, tables
        return data

    # ---- queries -------------------------------------------------------------------------
    @property
    def utt_ids(self):
        """Utterance ids in Kaldi (C-locale) order: segments keys, else wav.scp keys."""
        return sorted(self.tables.get("segments") or self.tables["wav.scp"])

    @property
    def wav_scp(self):
        return self.tables["wav.scp"]

    @property
    def segments(self):
        return self.tables.get("segments")

    @property
    def utt2spk(self):
        return self.tables.get("utt2spk")

    @property
    def spk2utt(self):
        """{speaker: sorted utterance ids}, derived from utt2spk (None without speakers)."""
        if "utt2spk" not in self.tables:
            return None
        result = {}
        for utt in sorted(self.tables["utt2spk"]):
            result.setdefault(self.tables["utt2spk"][utt], []).append(utt)
        return {spk: tuple(utts) for spk, utts in sorted(result.items())}

    def table(self, name):
        """The {id: value} table of file `name`, or None when the data dir has no such file."""
        return self.tables.get(name)

    @property
    def files(self):
        """Names of the files this data dir writes (spk2utt included when utt2spk is)."""
        names = set(self.tables) | ({"spk2utt"} if "utt2spk" in self.tables else set())
        return sorted(names)

    def source(self, utt):
        """The AudioSource of utterance `utt` (recording path plus its segment, if any)."""
        segments = self.tables.get("segments")
        if segments is not None:
            if utt not in segments:
                raise DataDirError(f"utterance {utt!r} is not in {self._name('segments')}")
            seg = segments[utt]
            path = self.tables["wav.scp"][seg.recording]
            return AudioSource(path, seg.start, seg.end, is_pipe(path))
        if utt not in self.tables["wav.scp"]:
            raise DataDirError(f"utterance {utt!r} is not in {self._name('wav.scp')}")
        path = self.tables["wav.scp"][utt]
        return AudioSource(path, 0.0, None, is_pipe(path))

    def domain(self, utt):
        """Domain of `utt` from utt2domain; 'unknown' when the data dir has none."""
        return self.tables.get("utt2domain", {}).get(utt, "unknown")

    def __len__(self):
        return len(self.tables.get("segments") or self.tables["wav.scp"])

    def __eq__(self, other):
        return isinstance(other, DataDir) and self.tables == other.tables

    def __repr__(self):
        return f"DataDir({len(self)} utterances, files={self.files}, source={self.source_dir!r})"

    # ---- transformations -------------------------------------------------------------------
    def subset(self, utt_ids):
        """A new DataDir with only `utt_ids` (and the recordings they use); unknown ids fail."""
        keep = set(utt_ids)
        unknown = sorted(keep.difference(self.utt_ids))
        if unknown:
            raise DataDirError(f"subset of {self._name('')}: {len(unknown)} id(s) not in the data "
                               f"dir: {', '.join(map(repr, unknown[:5]))}")
        segments = self.tables.get("segments")
        recordings = {segments[u].recording for u in keep} if segments is not None else keep
        tables = {}
        for name, table in self.tables.items():
            ids = recordings if _key_kind(name) == "rec" else keep
            tables[name] = {k: v for k, v in table.items() if k in ids}
        return DataDir._from_tables(tables, self.allow_pipes)

    def with_prefix(self, prefix):
        """A new DataDir whose utterance, recording and speaker ids all start with `prefix`."""
        if not prefix:
            return DataDir._from_tables(dict(self.tables), self.allow_pipes)
        if not _ID.fullmatch(prefix):
            raise DataDirError(f"id prefix {prefix!r} contains whitespace or control characters")
        tables = {}
        for name, table in self.tables.items():
            tables[name] = {prefix + k: _prefixed_value(name, v, prefix) for k, v in table.items()}
        return DataDir._from_tables(tables, self.allow_pipes)

    def _set_speakers_from_spk2utt(self, spk2utt):
        utt2spk = {}
        for spk, utts in spk2utt.items():
            for utt in (utts.split() if isinstance(utts, str) else utts):
                if utt2spk.setdefault(utt, spk) != spk:
                    raise DataDirError(f"spk2utt: utterance {utt!r} is listed under speakers "
                                       f"{utt2spk[utt]!r} and {spk!r}")
        given = self.tables.get("utt2spk")
        if given is not None and given != utt2spk:
            raise DataDirError("utt2spk and spk2utt given together disagree")
        self.tables["utt2spk"] = _coerce_table("utt2spk", utt2spk)

    # ---- writing ---------------------------------------------------------------------------
    def to_texts(self):
        """{file name: file content} in Kaldi order, spk2utt derived from utt2spk."""
        texts = {}
        for name in sorted(self.tables):
            kind = kind_for(name)
            texts[name] = _table_text(self.tables[name], kind.format)
        if "utt2spk" in self.tables:
            texts["spk2utt"] = _table_text(self.spk2utt, KINDS["spk2utt"].format)
        return texts

    def check(self, where="<in memory>", check_audio=False, tolerance=DEFAULT_TOLERANCE,
              texts=None):
        """Validate the text this data dir would write, as `load_data_dir` would read it."""
        texts = self.to_texts() if texts is None else texts
        raw = {name: text.encode("utf-8") for name, text in texts.items()}
        _parse_raw(raw, where, Problems(), self.allow_pipes, check_audio, tolerance,
                   f"data dir {where} (not written)")

    def write(self, path):
        """Write the data dir to folder `path`, replacing it whole and atomically."""
        path = os.fspath(path)
        texts = self.to_texts()
        self.check(path, texts=texts)
        _refuse_foreign_dir(path)
        with atomic_dir(path) as tmp:
            for name, text in texts.items():
                with open(os.path.join(tmp, name), "w", encoding="utf-8", newline="\n") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
        self.source_dir = path

    def _name(self, file_name):
        return os.path.join(self.source_dir, file_name) if self.source_dir else "<in memory>"


def load_data_dir(path, allow_pipes=False, check_audio=False, tolerance=DEFAULT_TOLERANCE,
                  max_problems=DEFAULT_MAX_PROBLEMS):
    """Read and validate the data dir at `path`; one DataDirError lists all problems.

    `check_audio` also checks that every audio file exists and that segments lie inside their
    recordings (from reco2dur, else from the audio header); without it only reco2dur is used.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataDirError(f"{path}: not a directory (expected a Kaldi data dir)")
    problems = Problems(max_problems)
    raw = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(".") or kind_for(name) is None or not os.path.isfile(full):
            continue
        try:
            with open(full, "rb") as f:
                raw[name] = f.read()
        except OSError as e:
            problems.add(full, None, f"cannot read ({e.strerror})")
    data = _parse_raw(raw, path, problems, allow_pipes, check_audio, tolerance,
                      f"data dir {path}")
    data.source_dir = path
    return data


def _parse_raw(raw, directory, problems, allow_pipes, check_audio, tolerance, what):
    """Parse {file name: bytes} of one data dir; raise the collected problems or build it."""
    tables = {name: parse_table(name, data, os.path.join(directory, name), problems)
              for name, data in raw.items()}
    derived = None
    if "wav.scp" in tables:
        derived = check_tables(tables, problems, allow_pipes, check_audio, tolerance)
    else:
        problems.add(os.path.join(directory, "wav.scp"), None,
                     "missing (every data dir needs a wav.scp)")
    problems.raise_if_any(what)
    values = {name: table.values for name, table in tables.items() if name != "spk2utt"}
    if derived is not None:
        values["utt2spk"] = derived
    return DataDir._from_tables(values, allow_pipes)


def _refuse_foreign_dir(path):
    if os.path.exists(path) and not os.path.isdir(path):
        raise DataDirError(f"{path}: exists and is not a directory; refusing to replace it")
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(
            os.path.join(path, "wav.scp")):
        raise DataDirError(f"{path}: exists, is not empty and has no wav.scp; refusing to "
                           "replace a folder that is not a data dir")


def _table_text(table, format_value):
    lines = []
    for key in sorted(table):
        rest = format_value(table[key])
        lines.append(f"{key} {rest}\n" if rest else f"{key}\n")
    return "".join(lines)


def _key_kind(name):
    return kind_for(name).key


def _prefixed_value(name, value, prefix):
    if name == "segments":
        return dataclasses.replace(value, recording=prefix + value.recording)
    if name == "utt2spk":
        return prefix + value
    return value


def _coerce_table(name, table):
    """Check ids and convert the values of an in-code table to the types the reader produces."""
    kind = kind_for(name)
    if kind is None or name == "spk2utt":
        raise DataDirError(f"unknown data-dir file {name!r} (known: {', '.join(sorted(KINDS))}, "
                           "utt2<label>)")
    result = {}
    for key, value in table.items():
        if not isinstance(key, str) or not _ID.fullmatch(key):
            raise DataDirError(f"{name}: id {key!r} is empty or contains whitespace or "
                               "control characters")
        try:
            result[key] = _coerce_value(name, kind, value)
        except (TypeError, ValueError) as e:
            raise DataDirError(f"{name}: bad value {value!r} for id {key!r} ({e})") from e
    return result


def _coerce_value(name, kind, value):
    if name == "segments":
        if not isinstance(value, Segment):
            recording, start, end = value
            end = None if end is None or float(end) == -1 else float(end)
            value = Segment(str(recording), float(start), end)
        return value
    if name in ("utt2dur", "reco2dur", "utt2weight"):
        return float(value)
    if name in ("utt2domain_post", "utt2domain_mix"):  # (p_speech, p_audio, p_music); `check` validates the numbers
        value = tuple(float(v) for v in value)
        if len(value) != 3:
            raise ValueError("expected 3 probabilities (speech, audio, music)")
        return value
    if name == "utt2num_samples":
        if int(value) != float(value):
            raise ValueError("not a whole number")
        return int(value)
    if kind is LABEL_KIND:
        tokens = tuple(split_fields(value.strip(" \t")) if isinstance(value, str)
                       else (str(t) for t in value))
        if not tokens or not all(_ID.fullmatch(t) for t in tokens):
            raise ValueError("labels must be non-empty tokens without control characters")
        return tokens
    value = str(value)
    if _BAD_TEXT.search(value) or value != value.strip(" \t"):
        raise ValueError("newlines, control characters or surrounding spaces cannot be written")
    return value
