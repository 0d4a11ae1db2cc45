"""Validate a data dir and summarise it (what `python -m usad2.bin.validate_data_dir` prints)."""
import collections
import os

from usad2.audio.io import audio_info, is_pipe
from usad2.data.consistency import DEFAULT_TOLERANCE
from usad2.data.datadir import load_data_dir
from usad2.data.kaldi_text import DEFAULT_MAX_PROBLEMS, Problems
from usad2.errors import AudioError


def validate_data_dir(path, allow_pipes=False, check_audio=True, tolerance=DEFAULT_TOLERANCE,
                      max_problems=DEFAULT_MAX_PROBLEMS, open_audio=False):
    """Load and fully check the data dir at `path`.

    `check_audio` (default) checks that every audio file exists and that segments lie inside
    their recording; `open_audio` also opens every file's header (`usad2.audio.io.audio_info`),
    so empty, random-byte and truncated files are reported (pipes are not run). Returns the
    summary, whose "checked" entry says what was checked; raises one DataDirError listing every
    problem as `<file>:<line>: ...`.
    """
    data = load_data_dir(path, allow_pipes=allow_pipes, check_audio=check_audio or open_audio,
                         tolerance=tolerance, max_problems=max_problems)
    if open_audio:
        _open_every_file(data, os.path.join(os.fspath(path), "wav.scp"), max_problems)
    summary = summarize(data)
    summary["checked"] = ("tables, audio files exist, audio headers open" if open_audio else
                          "tables, audio files exist (headers not opened: --check_audio)" if check_audio else
                          "tables only (audio not checked)")
    return summary


def _open_every_file(data, where, max_problems):
    """Open the header of every recording's file; one DataDirError listing those that fail."""
    problems = Problems(limit=max_problems)
    for number, (rec, entry) in enumerate(sorted(data.wav_scp.items()), 1):
        if is_pipe(entry):
            continue
        try:
            _, frames, _ = audio_info(entry, rec)
        except AudioError as e:
            problems.add(where, None, f"recording {rec!r}: {e}")
            continue
        if frames == 0:
            problems.add(where, None, f"recording {rec!r}: {entry}: empty audio (0 samples)")
    problems.raise_if_any(f"{os.path.dirname(where)}: audio check")


def summarize(data):
    """Counts of a DataDir: utterances, recordings, speakers, hours and utterances per domain.

    Hours come from utt2dur, else from segments when every segment has an explicit end,
    else they are None (unknown without reading the audio).
    """
    hours = None
    if data.table("utt2dur") is not None:
        hours = sum(data.table("utt2dur").values()) / 3600
    elif data.segments is not None and all(s.end is not None for s in data.segments.values()):
        hours = sum(s.end - s.start for s in data.segments.values()) / 3600
    domains = collections.Counter(data.domain(u) for u in data.utt_ids)
    return {
        "utterances": len(data),
        "recordings": len(data.wav_scp),
        "speakers": len(data.spk2utt) if data.spk2utt is not None else None,
        "hours": hours,
        "domains": dict(sorted(domains.items())),
        "files": data.files,
    }


def format_summary(path, summary):
    """One human-readable line for a summary."""
    hours = "unknown" if summary["hours"] is None else f"{summary['hours']:.3f}"
    domains = ", ".join(f"{d} {n}" for d, n in summary["domains"].items())
    speakers = "" if summary["speakers"] is None else f", {summary['speakers']} speakers"
    checked = f"; checked: {summary['checked']}" if summary.get("checked") else ""
    return (f"{path}: OK: {summary['utterances']} utterances, {summary['recordings']} "
            f"recordings{speakers}, {hours} hours; domains: {domains}; "
            f"files: {' '.join(summary['files'])}{checked}")
