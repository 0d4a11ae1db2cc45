"""Fingerprinted `.done` stamps that make every stage idempotent and resumable.

A stage computes a fingerprint of its arguments and of the index files it reads (wav.scp,
feats.scp, ...: their content, not their mtime), skips its work when the stamp beside its
output holds the same fingerprint, and writes the stamp only after its output is complete.
"""
import hashlib
import json
import os

from usad2.utils.atomic import atomic_write_text

STAMP_NAME = ".done"


def file_digest(path, chunk=1 << 20):
    """sha256 hex digest of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(args, inputs=()):
    """Digest of a JSON-serialisable `args` mapping and the content of each input file.

    Inputs are listed by path; a directory contributes every regular file directly inside it
    (its index files), sorted by name. A missing input is part of the fingerprint too.
    """
    h = hashlib.sha256()
    h.update(json.dumps(args, sort_keys=True, default=str).encode())
    for item in inputs:
        item = os.fspath(item)
        files = [item]
        if os.path.isdir(item):
            files = sorted(
                os.path.join(item, n) for n in os.listdir(item)
                if not n.startswith(".") and os.path.isfile(os.path.join(item, n))
            )
        for path in files:
            h.update(os.path.basename(path).encode())
            h.update(file_digest(path).encode() if os.path.exists(path) else b"<missing>")
    return h.hexdigest()


def stamp_path(output_dir):
    return os.path.join(os.fspath(output_dir), STAMP_NAME)


def is_done(output_dir, fp):
    """True when `output_dir` holds a stamp with exactly this fingerprint."""
    try:
        with open(stamp_path(output_dir), encoding="utf-8") as f:
            return json.load(f).get("fingerprint") == fp
    except (FileNotFoundError, ValueError):
        return False


def mark_done(output_dir, fp, info=None):
    """Write the stamp (atomically) once `output_dir` is complete."""
    record = {"fingerprint": fp}
    if info:
        record["info"] = info
    atomic_write_text(stamp_path(output_dir), json.dumps(record, sort_keys=True, default=str) + "\n")


def clear(output_dir):
    """Remove the stamp so the stage reruns (used by --force)."""
    try:
        os.unlink(stamp_path(output_dir))
    except FileNotFoundError:
        pass
