"""The file kinds of a Kaldi data dir: what each line holds, how it is parsed and written.

| file              | key       | value                                        |
|-------------------|-----------|----------------------------------------------|
| wav.scp           | recording | path (rest of the line, inner spaces kept) or `cmd |` pipe |
| segments          | utterance | recording, start, end (seconds; end -1 = to the end) |
| utt2spk           | utterance | speaker                                      |
| spk2utt           | speaker   | utterances (read, then turned into utt2spk)  |
| utt2dur, reco2dur | utt / rec | duration in seconds (> 0)                    |
| utt2num_samples   | utterance | number of samples (integer > 0)              |
| utt2domain        | utterance | speech, audio, music or unknown              |
| utt2domain_post   | utterance | p(speech) p(audio) p(music): each in [0, 1], summing to 1 |
| utt2domain_mix    | utterance | true mixture proportions (demo mixed set), as utt2domain_post |
| utt2weight        | utterance | sampling weight (float > 0)                  |
| text              | utterance | transcript (rest of the line, may be empty)  |
| utt2<label>       | utterance | one or more space-separated label tokens     |

Without a segments file the wav.scp keys are the utterance ids. A `utt2<label>` name is
`utt2` followed by letters, digits, `_` or `-` (so backups such as `utt2spk.bak` are ignored).
"""
import dataclasses
import re
from typing import Callable, Optional

from usad2.data.kaldi_text import (FieldError, format_float, parse_float, parse_positive_float,
                                   parse_positive_int, split_fields)

DOMAINS = ("speech", "audio", "music", "unknown")
POSTERIOR_DOMAINS = ("speech", "audio", "music")  # the column order of utt2domain_post
POSTERIOR_SUM_TOLERANCE = 1e-3  # |sum - 1| a utt2domain_post line may have (rounded decimals)
LABEL_NAME = re.compile(r"utt2[A-Za-z0-9_-]+")


@dataclasses.dataclass(frozen=True)
class Segment:
    """One `segments` line: a slice of a recording; `end` None means to the end."""

    recording: str
    start: float
    end: Optional[float]


@dataclasses.dataclass(frozen=True)
class Kind:
    """How one data-dir file is keyed, parsed and written.

    `parse` takes the rest of the line (a string when `whole_rest`, else its fields) and
    returns the value or raises FieldError; `format` turns a value back into that rest.
    `coverage` is "all" when every key of the key set must appear, "partial" when a subset may.
    """

    key: str
    parse: Callable
    format: Callable
    min_fields: int = 1
    max_fields: Optional[int] = 1
    whole_rest: bool = False
    coverage: str = "all"


def _one(parse):
    return lambda fields: parse(fields[0])


def _parse_segment(fields):
    start = parse_float(fields[1], "start time")
    end = parse_float(fields[2], "end time")
    if start < 0:
        raise FieldError(f"start time {fields[1]} is negative")
    if end == -1:
        return Segment(fields[0], start, None)
    if end < 0:
        raise FieldError(f"end time {fields[2]} is negative (only -1, meaning 'to the end', is)")
    if start >= end:
        raise FieldError(f"start time {fields[1]} is not before end time {fields[2]}")
    return Segment(fields[0], start, end)


def _format_segment(seg):
    end = "-1" if seg.end is None else format_float(seg.end)
    return f"{seg.recording} {format_float(seg.start)} {end}"


def _parse_domain(token):
    if token not in DOMAINS:
        raise FieldError(f"unknown domain {token!r} (expected one of {', '.join(DOMAINS)})")
    return token


def _parse_domain_post(fields):
    """Three probabilities (speech, audio, music), each in [0, 1], summing to 1 (± tolerance)."""
    values = tuple(parse_float(t, f"p({d})") for t, d in zip(fields, POSTERIOR_DOMAINS))
    for value, token, domain in zip(values, fields, POSTERIOR_DOMAINS):
        if not 0.0 <= value <= 1.0:
            raise FieldError(f"p({domain}) {token} is not a probability in [0, 1]")
    total = sum(values)
    if abs(total - 1.0) > POSTERIOR_SUM_TOLERANCE:
        raise FieldError(f"p(speech) + p(audio) + p(music) = {total:.6g}, not 1 "
                         f"(tolerance {POSTERIOR_SUM_TOLERANCE})")
    return values


def _format_domain_post(values):
    return " ".join(format_float(v) for v in values)


def _parse_wav(rest):
    if not rest:
        raise FieldError("wrong number of fields: expected '<id> <path>', got only an id")
    return rest


def _str(value):
    return str(value)


_DURATION = Kind("utt", _one(lambda t: parse_positive_float(t, "duration")), format_float)
_POSTERIOR = Kind("utt", _parse_domain_post, _format_domain_post, min_fields=3, max_fields=3)

KINDS = {
    "wav.scp": Kind("rec", _parse_wav, _str, whole_rest=True),
    "segments": Kind("utt", _parse_segment, _format_segment, min_fields=3, max_fields=3),
    "utt2spk": Kind("utt", _one(str), _str),
    "spk2utt": Kind("spk", tuple, " ".join, max_fields=None),
    "utt2dur": _DURATION,
    "reco2dur": dataclasses.replace(_DURATION, key="rec"),
    "utt2num_samples": Kind("utt", _one(lambda t: parse_positive_int(t, "number of samples")),
                            _str),
    "utt2domain": Kind("utt", _one(_parse_domain), _str),
    "utt2domain_post": _POSTERIOR,
    "utt2domain_mix": _POSTERIOR,
    "utt2weight": Kind("utt", _one(lambda t: parse_positive_float(t, "weight")), format_float),
    "text": Kind("utt", str, _str, whole_rest=True),
}
LABEL_KIND = Kind("utt", tuple, " ".join, max_fields=None, coverage="partial")


def kind_for(name):
    """The Kind of data-dir file `name`, or None when usad2 does not read that file."""
    if name in KINDS:
        return KINDS[name]
    if LABEL_NAME.fullmatch(name):
        return LABEL_KIND
    return None


def parse_value(kind, rest):
    """Parse the rest of a line (after the key) with `kind`; FieldError on any problem."""
    if kind.whole_rest:
        return kind.parse(rest)
    fields = split_fields(rest)
    if len(fields) < kind.min_fields or (kind.max_fields and len(fields) > kind.max_fields):
        expected = (f"{kind.min_fields + 1}" if kind.max_fields == kind.min_fields
                    else f"at least {kind.min_fields + 1}")
        raise FieldError(f"wrong number of fields: expected {expected}, got {len(fields) + 1}")
    return kind.parse(fields)
