"""Libri-Light (unlabelled audiobooks) -> Kaldi data dir with segments, domain speech.

Layout read: `<root>/<subset>/<speaker>/<book folder>/<file>.flac`, subsets small, medium,
large (and duplicate), each flac with a `<file>.json` whose `voice_activity` lists
`[start, end]` speech intervals in seconds. Files are hours long, so they are cut here into
utterances: consecutive voice-activity intervals are merged while the merged span stays within
`chunk_seconds` (an interval longer than that is cut into `chunk_seconds` windows); without a
json the file is cut into fixed windows of `chunk_seconds` (length from the audio header).
Ids: `<speaker>-<book>-<file>-<4-digit chunk>` with unsafe characters replaced by `_`.
Output: wav.scp (one recording per file), segments, utt2spk (the speaker), utt2domain speech.
"""
import json
import os

from usad2.audio.io import audio_info
from usad2.data.corpora.common import require_dir, safe_id, select_subsets, write_corpus
from usad2.errors import DataDirError

SUBSETS = ("small", "medium", "large", "duplicate")


def merge_activity(intervals, chunk_seconds):
    """Merge sorted [start, end] speech intervals into spans of at most `chunk_seconds`."""
    spans = []
    for start, end in sorted((float(s), float(e)) for s, e in intervals):
        if end <= start:
            continue
        while end - start > chunk_seconds:  # an interval longer than a chunk: fixed windows
            spans.append([start, start + chunk_seconds])
            start += chunk_seconds
        if spans and end - spans[-1][0] <= chunk_seconds and start >= spans[-1][1]:
            spans[-1][1] = end
        else:
            spans.append([start, end])
    return [tuple(s) for s in spans]


def _spans(flac, chunk_seconds):
    meta = os.path.splitext(flac)[0] + ".json"
    if os.path.isfile(meta):
        try:
            with open(meta, encoding="utf-8") as f:
                activity = json.load(f)["voice_activity"]
        except (ValueError, KeyError, TypeError) as e:
            raise DataDirError(f"{meta}: no readable voice_activity list ({e})") from None
        return merge_activity(activity, chunk_seconds)
    sr, frames, _ = audio_info(flac)
    return merge_activity([(0.0, frames / sr)], chunk_seconds)


def prepare_librilight(root, out, subsets=None, chunk_seconds=20.0):
    """Write the data dir of the Libri-Light `subsets` (default: all present) to `out`."""
    root = require_dir(root, "a Libri-Light folder holding small/, medium/, large/")
    found = [s for s in SUBSETS if os.path.isdir(os.path.join(root, s))]
    wav, segments, utt2spk = {}, {}, {}
    for subset in select_subsets(subsets, found, "Libri-Light", root):
        base = os.path.join(root, subset)
        for directory, subdirs, files in os.walk(base):
            subdirs.sort()
            parts = os.path.relpath(directory, base).split(os.sep)
            for name in sorted(f for f in files if f.endswith(".flac")) if len(parts) == 2 else ():
                speaker, book = parts
                rec = safe_id(f"{speaker}-{book}-{os.path.splitext(name)[0]}")
                wav[rec] = os.path.join(directory, name)
                spans = [(round(a, 3), round(b, 3)) for a, b in _spans(wav[rec], chunk_seconds)]
                for k, (start, end) in enumerate(s for s in spans if s[1] > s[0]):
                    segments[f"{rec}-{k:04d}"] = (rec, start, end)
                    utt2spk[f"{rec}-{k:04d}"] = safe_id(speaker)
    return write_corpus(out, "librilight", "speech", wav, segments=segments, utt2spk=utt2spk)
