"""Repair a data dir the way Kaldi's fix_data_dir.sh does: keep what is consistent, drop the rest.

Unreadable or malformed lines and later duplicates are dropped, files are sorted, utterances
missing from any file that must cover all (utt2spk, utt2dur, utt2domain, ...) are dropped, as
are segments whose recording is missing (or refused: pipes without `allow_pipes`, missing audio
with `check_audio`) or that end past reco2dur, utt2dur values that disagree with their segment,
and recordings no segment uses. spk2utt is rebuilt from utt2spk (from spk2utt when it is the
only speaker file). The result is validated and written atomically; what was dropped is
logged and returned, so nothing disappears silently.
"""
import collections
import logging
import os

from usad2.data.consistency import DEFAULT_TOLERANCE, is_pipe, parse_table
from usad2.data.datadir import DataDir
from usad2.data.kaldi_text import Problems
from usad2.data.kinds import kind_for
from usad2.errors import DataDirError

logger = logging.getLogger("usad2")
UNSORTED = "ids not sorted"  # the start of consistency.parse_table's message for an unsorted file


def fix_data_dir(path, out=None, allow_pipes=False, check_audio=False,
                 tolerance=DEFAULT_TOLERANCE):
    """Fix the data dir at `path` into `out` (default: in place); return counts of drops."""
    path = os.fspath(path)
    tables, dropped = _read_leniently(path)
    if "wav.scp" not in tables:
        raise DataDirError(f"{path}/wav.scp: missing; nothing to fix from")
    _speakers_from_spk2utt(tables)
    recordings = _usable_recordings(tables, allow_pipes, check_audio, dropped)
    segments = tables.get("segments")
    if segments is not None:
        segments = {u: s for u, s in segments.items() if _segment_ok(u, s, tables, recordings,
                                                                     tolerance, dropped)}
        tables["segments"] = segments
    utts = set(segments if segments is not None else recordings)
    for name, table in tables.items():
        if name not in ("wav.scp", "segments") and kind_for(name).coverage == "all" \
                and kind_for(name).key == "utt":
            _count(dropped, f"not in {name}", utts - set(table))
            utts &= set(table)
    used = {segments[u].recording for u in utts} if segments is not None else utts
    result = {}
    for name, table in tables.items():
        keep = used if kind_for(name).key == "rec" else utts
        result[name] = {k: v for k, v in table.items() if k in keep}
    fixed = DataDir._from_tables(result, allow_pipes)
    fixed.write(out or path)
    for reason, count in sorted(dropped.items()):
        logger.warning("fix_data_dir %s: dropped %d (%s)", path, count, reason)
    logger.info("fix_data_dir %s: %d utterances kept", out or path, len(fixed))
    return dict(dropped)


def _read_leniently(path):
    """Parse every known file, keeping the good lines (first of duplicates); count the rest."""
    tables, dropped = {}, collections.Counter()
    if not os.path.isdir(path):
        raise DataDirError(f"{path}: not a directory (expected a Kaldi data dir)")
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if name.startswith(".") or kind_for(name) is None or not os.path.isfile(full):
            continue
        with open(full, "rb") as f:
            problems = Problems(limit=float("inf"))
            table = parse_table(name, f.read(), full, problems)
        # an unsorted file is a problem for the reader but loses no line: writing sorts it
        bad = [m for _, _, m in problems.items if not m.startswith(UNSORTED)]
        if len(bad) < problems.count:
            logger.info("fix_data_dir %s: %s was not sorted; written sorted", path, name)
        if bad:
            dropped[f"bad or duplicate lines in {name}"] += len(bad)
        tables[name] = table.values
    return tables, dropped


def _speakers_from_spk2utt(tables):
    spk2utt = tables.pop("spk2utt", None)
    if spk2utt is not None and "utt2spk" not in tables:
        utt2spk = {}
        for spk, utts in spk2utt.items():
            for utt in utts:
                utt2spk.setdefault(utt, spk)
        tables["utt2spk"] = utt2spk


def _usable_recordings(tables, allow_pipes, check_audio, dropped):
    wav = tables["wav.scp"]
    keep = {}
    for rec, entry in wav.items():
        if is_pipe(entry) and not allow_pipes:
            dropped["pipe recordings (allow_pipes is off)"] += 1
        elif check_audio and not is_pipe(entry) and not os.path.isfile(entry):
            dropped["recordings whose audio file is missing"] += 1
        elif "reco2dur" in tables and rec not in tables["reco2dur"]:
            dropped["recordings not in reco2dur"] += 1
        else:
            keep[rec] = entry
    tables["wav.scp"] = keep
    return keep


def _segment_ok(utt, seg, tables, recordings, tolerance, dropped):
    if seg.recording not in recordings:
        dropped["segments of unusable recordings"] += 1
        return False
    total = tables.get("reco2dur", {}).get(seg.recording)
    if total is not None and (seg.start >= total or (seg.end or 0) > total + tolerance):
        dropped["segments outside their recording (reco2dur)"] += 1
        return False
    duration = tables.get("utt2dur", {}).get(utt)
    if duration is not None and seg.end is not None and \
            abs(duration - (seg.end - seg.start)) > tolerance:
        dropped["utterances whose utt2dur disagrees with segments"] += 1
        return False
    return True


def _count(dropped, reason, ids):
    if ids:
        dropped[f"utterances {reason}"] += len(ids)
