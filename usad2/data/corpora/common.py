"""Helpers shared by the real-corpus preparers: checked inputs, clean ids/labels, one writer.

Every preparer turns a corpus's own layout into a Kaldi data dir with `utt2domain` (the domain
of the source corpus, docs/method.md#35-domain-weighting) and the corpus's labels as
`utt2<label>` files. Label values become tokens without spaces (`"Hip Hop"` -> `Hip_Hop`)
because a utt2<label> line holds space-separated tokens; a utterance without a value simply has
no line (labels may be partial).
"""
import csv
import logging
import os
import re

from usad2.data.datadir import DataDir
from usad2.data.validate import format_summary, summarize
from usad2.errors import DataDirError

logger = logging.getLogger("usad2")

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aac")
_SPACE = re.compile(r"\s+")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.+-]")


def require_dir(path, what):
    """`path` as a string; DataDirError naming `what` when it is not a directory."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataDirError(f"{path}: not a directory (expected {what})")
    return path


def require_file(path, what):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataDirError(f"{path}: missing (expected {what})")
    return path


def token(value):
    """A label value as one token (inner whitespace -> `_`), None when empty."""
    value = _SPACE.sub("_", (value or "").strip())
    return value or None


def clean_text(value):
    """A transcript on one line: whitespace runs (tabs, newlines) become one space."""
    return _SPACE.sub(" ", value or "").strip()


def safe_id(value):
    """An id made of letters, digits and `_ . + -` only (other characters become `_`)."""
    return _UNSAFE_ID.sub("_", value)


def read_tsv(path, required, delimiter="\t"):
    """Rows of a headed TSV/CSV file as (line number, {column: value}); checks the columns."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataDirError(f"{path}: empty file (expected a header line)")
        missing = [c for c in required if c not in header]
        if missing:
            raise DataDirError(f"{path}:1: missing column(s) {', '.join(missing)} "
                               f"(header: {' '.join(header)})")
        for number, fields in enumerate(reader, 2):
            if fields:
                yield number, dict(zip(header, fields)), fields[len(header):]


def find_audio(root, extensions=AUDIO_EXTENSIONS):
    """{file stem: path} of every audio file under `root` (first one wins on duplicates)."""
    found = {}
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in extensions:
                found.setdefault(stem, os.path.join(directory, name))
    return found


def select_subsets(requested, available, corpus, root):
    """The requested subsets (all available ones when None), checked against what exists."""
    if not requested:
        if not available:
            raise DataDirError(f"{root}: no {corpus} subset found")
        return list(available)
    unknown = [s for s in requested if s not in available]
    if unknown:
        raise DataDirError(f"{root}: {corpus} subset(s) {', '.join(unknown)} not found "
                           f"(found: {', '.join(available) or 'none'})")
    return list(requested)


def write_corpus(out, corpus, domain, wav_scp, segments=None, text=None, utt2spk=None,
                 labels=None):
    """Write the data dir of a corpus (every utterance tagged `domain`); returns the DataDir."""
    utts = sorted(segments or wav_scp)
    if not utts:
        raise DataDirError(f"{corpus}: no utterances found; nothing to write to {out}")
    tables = {f"utt2{name}": table for name, table in (labels or {}).items() if table}
    data = DataDir(wav_scp, segments, utt2spk=utt2spk, text=text,
                   utt2domain={u: domain for u in utts}, **tables)
    data.write(out)
    logger.info("%s: %s", corpus, format_summary(os.fspath(out), summarize(data)))
    return data
