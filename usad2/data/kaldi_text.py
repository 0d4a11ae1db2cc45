"""Line-level reading of Kaldi text tables (`<key> <fields...>` per line), robust to bad bytes.

Every data-dir file goes through `iter_lines`, which turns any byte sequence into either clean
lines or problems of the form `<file>:<line>: <problem>` collected in a `Problems` list; it never
lets a raw UnicodeDecodeError or ValueError escape. The rules (documented choices):

- Files are UTF-8. Ids are compared by Unicode code point, which is the same order as the
  UTF-8 bytes, i.e. the order of `LC_ALL=C sort` that Kaldi requires.
- Fields are separated by runs of ASCII spaces and tabs; leading and trailing spaces/tabs are
  ignored. No other character (no NBSP, no Unicode line separator) separates fields.
- A final line without a newline is accepted; an empty (or blank) line is a problem, as in
  Kaldi's validate_data_dir.sh.
- CRLF (Windows) line endings are rejected with a message saying how to convert, not silently
  accepted: Kaldi and ESPnet tools would keep the `\\r` inside the last field.
- NUL bytes, other control characters, a byte-order mark, and invalid UTF-8 are problems.
- Numbers are ASCII decimal only (`1`, `0.5`, `2.5e-3`); Python's extras (`1_0`, `inf`, `nan`,
  non-ASCII digits) are rejected because Kaldi's C parsers would not read them.
"""
import math
import re

from usad2.errors import DataDirError

DEFAULT_MAX_PROBLEMS = 100

_SEPARATOR = re.compile(r"[ \t]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\ufeff]")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT = re.compile(r"\+?[0-9]{1,18}")  # at most 18 digits: fits int64, as in Kaldi


class FieldError(Exception):
    """A field of one line is invalid; the reader turns it into `<file>:<line>: <message>`."""


class Problems:
    """Collects `<file>:<line>: <problem>` entries (up to `limit`) and raises them as one error.

    The raised DataDirError lists them sorted by file and line; its `.problems` attribute holds
    the same lines as a list (an attribute added here, errors.py is unchanged).
    """

    def __init__(self, limit=DEFAULT_MAX_PROBLEMS):
        self.limit = limit
        self.items = []
        self.count = 0

    def add(self, where, line, message):
        """Record a problem of file `where` at 1-based `line` (None: the whole file)."""
        self.count += 1
        if len(self.items) < self.limit:
            self.items.append((where, line or 0, message))

    def __bool__(self):
        return self.count > 0

    def raise_if_any(self, what):
        """Raise one DataDirError listing every collected problem; `.problems` holds the list."""
        if not self.count:
            return
        items = [f"{where}:{line}: {message}" if line else f"{where}: {message}"
                 for where, line, message in sorted(self.items, key=lambda p: p[:2])]
        lines = [f"{what}: {self.count} problem(s):"] + items
        if self.count > len(items):
            lines.append(f"... and {self.count - len(items)} more")
        error = DataDirError("\n".join(lines))
        error.problems = items
        raise error


def iter_lines(data, where, problems):
    """Yield `(line_number, text)` for each good line of `data` (bytes); report the bad ones.

    `text` has surrounding spaces/tabs removed and is never empty.
    """
    if not data:
        return
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, 1):
        text = _decode_line(raw, where, number, problems)
        if text is not None:
            yield number, text


def _decode_line(raw, where, number, problems):
    """The stripped text of one raw line, or None after recording why it is unusable."""
    if raw.endswith(b"\r"):
        problems.add(where, number, "Windows (CRLF) line ending; convert the file with "
                                    "`dos2unix` or `tr -d '\\r'`")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.add(where, number, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte "
                                    f"{e.start + 1})")
        return None
    bad = _CONTROL.search(text)
    if bad:
        name = {"\x00": "NUL byte", "\ufeff": "byte-order mark (BOM)"}.get(
            bad.group(), f"control character {ascii(bad.group())}")
        problems.add(where, number, f"{name} at column {bad.start() + 1}")
        return None
    text = text.strip(" \t")
    if not text:
        problems.add(where, number, "empty line")
        return None
    return text


def split_key(text):
    """Split a line into its key and the rest (rest keeps inner spaces; may be '')."""
    parts = _SEPARATOR.split(text, maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def split_fields(text):
    """Split the rest of a line into fields ([] for '')."""
    return _SEPARATOR.split(text) if text else []


def parse_float(token, what):
    """A finite float written in ASCII decimal notation, else FieldError naming `what`."""
    if not _FLOAT.fullmatch(token):
        raise FieldError(f"{what} {token!r} is not a number")
    value = float(token)
    if not math.isfinite(value):
        raise FieldError(f"{what} {token!r} is out of range")
    return value


def parse_positive_float(token, what):
    """A finite float > 0, else FieldError."""
    value = parse_float(token, what)
    if value <= 0:
        raise FieldError(f"{what} must be positive, got {token!r}")
    return value


def parse_positive_int(token, what):
    """An integer > 0 written with ASCII digits, else FieldError."""
    if not _INT.fullmatch(token):
        raise FieldError(f"{what} {token!r} is not a whole number below 10^18")
    value = int(token)
    if value <= 0:
        raise FieldError(f"{what} must be positive, got {token!r}")
    return value


def format_float(value):
    """Shortest text that reads back to exactly `value` (Python repr, valid for parse_float)."""
    return repr(float(value))

