"""Per-file parsing and cross-file checks of a Kaldi data dir, reported as `<file>:<line>: ...`.

`parse_table` reads one file's bytes (duplicate ids, C-locale order, field counts and values);
`check_tables` checks the files against each other (every utterance in every file, segments
inside their recordings, spk2utt agreeing with utt2spk, pipes only when allowed, audio present).
Both only add to a `Problems` list; the caller raises once, so a user sees every problem at once.
"""
import dataclasses
import os

from usad2.data.kaldi_text import FieldError, iter_lines, split_key
from usad2.data.kinds import kind_for, parse_value
from usad2.errors import AudioError

DEFAULT_TOLERANCE = 0.05  # seconds a segment may reach past the end of its recording


@dataclasses.dataclass
class Table:
    """One parsed file: values by key, and the line of every key (also keys with bad values)."""

    name: str
    where: str
    values: dict
    lines: dict


def parse_table(name, data, where, problems):
    """Parse the bytes of data-dir file `name` (shown as `where` in problems) into a Table."""
    kind = kind_for(name)
    table = Table(name, where, {}, {})
    previous = None
    unsorted_reported = False
    for number, text in iter_lines(data, where, problems):
        key, rest = split_key(text)
        if key in table.lines:
            problems.add(where, number, f"duplicate id {key!r} (first on line {table.lines[key]})")
            continue
        if previous is not None and key < previous and not unsorted_reported:
            problems.add(where, number, f"ids not sorted in C-locale order: {key!r} comes after "
                                        f"{previous!r} (sort the file with `LC_ALL=C sort`)")
            unsorted_reported = True
        previous = key
        table.lines[key] = number
        try:
            table.values[key] = parse_value(kind, rest)
        except FieldError as e:
            problems.add(where, number, str(e))
    return table


def is_pipe(entry):
    """True when a wav.scp entry is a Kaldi pipe command (`cmd args |`)."""
    return entry.endswith("|")


def audio_duration(path):
    """Duration in seconds of the audio file at `path` (soundfile header, else soxi).

    Raises AudioError naming the file when neither can read it.
    """
    import soundfile

    try:
        info = soundfile.info(path)
        if info.samplerate > 0:
            return info.frames / info.samplerate
    except (RuntimeError, OSError, ValueError, TypeError):
        pass
    try:
        import sox

        duration = sox.file_info.duration(path)
    except Exception as e:  # pysox raises assorted errors (SoxiError, OSError, ValueError)
        raise AudioError(f"{path}: cannot read the audio header ({e})") from e
    if duration is None:
        raise AudioError(f"{path}: cannot read the audio header (no duration)")
    return float(duration)


def check_tables(tables, problems, allow_pipes=False, check_audio=False,
                 tolerance=DEFAULT_TOLERANCE):
    """Cross-check parsed tables; return utt2spk derived from spk2utt when only that exists."""
    wav = tables["wav.scp"]
    if not wav.lines:
        problems.add(wav.where, None, "has no valid entries")
    _check_wav(wav, problems, allow_pipes, check_audio)
    utts = tables.get("segments") or wav
    if "segments" in tables:
        _check_segments(tables, problems, check_audio, tolerance)
    for name, table in tables.items():
        if name not in ("wav.scp", "segments", "spk2utt"):
            kind = kind_for(name)
            base, what = (wav, "recording") if kind.key == "rec" else (utts, "utterance")
            _check_coverage(table, base, what, kind.coverage == "all", problems)
    if "utt2dur" in tables and "segments" in tables:
        _check_durations(tables["utt2dur"], tables["segments"], problems, tolerance)
    return _check_speakers(tables, utts, problems)


def _check_wav(wav, problems, allow_pipes, check_audio):
    for rec, entry in wav.values.items():
        line = wav.lines[rec]
        if is_pipe(entry):
            if not allow_pipes:
                problems.add(wav.where, line, f"Kaldi pipe command refused ({entry!r}); enable "
                             "pipes with allow_pipes=True / --allow_pipes true only for data "
                             "dirs you trust")
        elif check_audio and not os.path.isfile(entry):
            what = "is not a regular file" if os.path.exists(entry) else "does not exist"
            problems.add(wav.where, line, f"audio file {entry!r} of recording {rec!r} {what}")


def _check_segments(tables, problems, check_audio, tolerance):
    segments, wav, reco2dur = tables["segments"], tables["wav.scp"], tables.get("reco2dur")
    durations = {}
    for utt, seg in segments.values.items():
        line = segments.lines[utt]
        if seg.recording not in wav.lines:
            problems.add(segments.where, line,
                         f"recording {seg.recording!r} of utterance {utt!r} is not in wav.scp")
            continue
        if seg.recording not in durations:
            durations[seg.recording] = _recording_duration(seg.recording, wav, reco2dur,
                                                           problems, check_audio)
        total = durations[seg.recording]
        if total is None:
            continue
        if seg.start >= total:
            problems.add(segments.where, line, f"segment {utt!r} starts at {seg.start} s, at or "
                         f"after the end of recording {seg.recording!r} ({total:.3f} s)")
        elif seg.end is not None and seg.end > total + tolerance:
            problems.add(segments.where, line, f"segment {utt!r} ends at {seg.end} s, beyond the "
                         f"end of recording {seg.recording!r} ({total:.3f} s)")


def _recording_duration(rec, wav, reco2dur, problems, check_audio):
    """Length of a recording from reco2dur, else from its audio header when checking audio."""
    if reco2dur is not None and rec in reco2dur.values:
        return reco2dur.values[rec]
    entry = wav.values.get(rec)
    if not check_audio or entry is None or is_pipe(entry) or not os.path.isfile(entry):
        return None
    try:
        return audio_duration(entry)
    except AudioError as e:
        problems.add(wav.where, wav.lines[rec], str(e))
        return None


def _check_coverage(table, base, what, require_all, problems):
    for key, line in table.lines.items():
        if key not in base.lines:
            problems.add(table.where, line, f"{what} {key!r} is not in {base.name}")
    if require_all:
        for key, line in base.lines.items():
            if key not in table.lines:
                problems.add(base.where, line, f"{what} {key!r} has no entry in {table.name}")


def _check_durations(utt2dur, segments, problems, tolerance):
    for utt, duration in utt2dur.values.items():
        seg = segments.values.get(utt)
        if seg is not None and seg.end is not None and abs(duration - (seg.end - seg.start)) > tolerance:
            problems.add(utt2dur.where, utt2dur.lines[utt],
                         f"duration {duration} of {utt!r} differs from its segment "
                         f"({seg.end - seg.start:.3f} s)")


def _check_speakers(tables, utts, problems):
    spk2utt, utt2spk = tables.get("spk2utt"), tables.get("utt2spk")
    if spk2utt is None:
        return None
    listed = {}
    for spk, members in spk2utt.values.items():
        for utt in members:
            line = spk2utt.lines[spk]
            if utt in listed:
                problems.add(spk2utt.where, line, f"utterance {utt!r} is listed twice (also under "
                             f"speaker {listed[utt][0]!r} on line {listed[utt][1]})")
                continue
            listed[utt] = (spk, line)
    if utt2spk is None:
        derived = Table("spk2utt", spk2utt.where, {u: s for u, (s, _) in listed.items()},
                        {u: line for u, (_, line) in listed.items()})
        _check_coverage(derived, utts, "utterance", True, problems)
        return derived.values
    for utt, (spk, line) in listed.items():
        if utt not in utt2spk.lines:
            problems.add(spk2utt.where, line, f"utterance {utt!r} (speaker {spk!r}) is not in utt2spk")
        elif utt in utt2spk.values and utt2spk.values[utt] != spk:
            problems.add(spk2utt.where, line, f"utterance {utt!r} is listed under speaker {spk!r} "
                         f"but {utt2spk.name}:{utt2spk.lines[utt]} gives "
                         f"{utt2spk.values[utt]!r}")
    for utt, line in utt2spk.lines.items():
        if utt not in listed:
            problems.add(utt2spk.where, line, f"utterance {utt!r} is missing from spk2utt")
    return None
