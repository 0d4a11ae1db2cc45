"""Validate a data dir and summarise it (what `python -m usad2.bin.validate_data_dir` prints)."""
import collections

from usad2.data.consistency import DEFAULT_TOLERANCE
from usad2.data.datadir import load_data_dir
from usad2.data.kaldi_text import DEFAULT_MAX_PROBLEMS


def validate_data_dir(path, allow_pipes=False, check_audio=True, tolerance=DEFAULT_TOLERANCE,
                      max_problems=DEFAULT_MAX_PROBLEMS):
    """Load and fully check the data dir at `path` (audio files too by default).

    Returns its summary; raises one DataDirError listing every problem as `<file>:<line>: ...`.
    """
    data = load_data_dir(path, allow_pipes=allow_pipes, check_audio=check_audio,
                         tolerance=tolerance, max_problems=max_problems)
    return summarize(data)


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
    return (f"{path}: OK: {summary['utterances']} utterances, {summary['recordings']} "
            f"recordings{speakers}, {hours} hours; domains: {domains}; "
            f"files: {' '.join(summary['files'])}")
