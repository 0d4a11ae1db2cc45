"""AudioSet (a folder of downloaded clips + the segment CSVs) -> Kaldi data dir, domain audio.

Layout read: the segment lists `<subset>_segments.csv` (subsets balanced_train,
unbalanced_train, eval) in `<root>` or `<root>/metadata`, whose lines after the `#` comment
header are `YTID, start_seconds, end_seconds, "label,label,..."` (label = AudioSet MID such as
/m/09x0r), and the clips anywhere under `<root>`. Downloaders name clips differently; a clip is
found by its file stem, tried in this order: `Y<YTID>_<start>_<end>` (3 decimals, the DCASE
naming), `<YTID>_<start>_<end>` (3 decimals), `<YTID>_<start ms>`, `<YTID>_<int start>_<int end>`,
`<YTID>_<int start>`, `Y<YTID>`, `<YTID>`. Clips are whole 10 s downloads (no segments file).
Videos that were never downloaded (common: videos disappear from YouTube) are counted and
logged, not an error; none found at all is an error.
Output: wav.scp, utt2labels (all positive MIDs: multi-label), utt2subset, utt2domain audio.
Ids: `Y<YTID>_<start ms>`.
"""
import csv
import logging
import os

from usad2.data.corpora.common import find_audio, require_dir, select_subsets, write_corpus
from usad2.data.kaldi_text import Problems
from usad2.errors import DataDirError

logger = logging.getLogger("usad2")

SUBSETS = ("balanced_train", "unbalanced_train", "eval")


def candidate_stems(ytid, start, end):
    """File stems under which downloaders store the clip of (YTID, start, end)."""
    s, e = float(start), float(end)
    return [f"Y{ytid}_{s:.3f}_{e:.3f}", f"{ytid}_{s:.3f}_{e:.3f}", f"{ytid}_{round(s * 1000)}",
            f"{ytid}_{int(s)}_{int(e)}", f"{ytid}_{int(s)}", f"Y{ytid}", ytid]


def read_segments(path, problems):
    """Rows (line, YTID, start, end, [labels]) of an AudioSet segments CSV."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for number, fields in enumerate(csv.reader(f, skipinitialspace=True), 1):
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 4:
                problems.add(path, number, f"expected 4 fields (YTID, start_seconds, "
                                           f"end_seconds, positive_labels), got {len(fields)}")
                continue
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                problems.add(path, number, f"start/end {fields[1]!r}, {fields[2]!r} not numbers")
                continue
            labels = [x.strip() for x in fields[3].split(",") if x.strip()]
            rows.append((number, fields[0].strip(), start, end, labels))
    return rows


def _csv_path(root, subset):
    for folder in (root, os.path.join(root, "metadata")):
        path = os.path.join(folder, f"{subset}_segments.csv")
        if os.path.isfile(path):
            return path
    return None


def prepare_audioset(root, out, subsets=None):
    """Write the data dir of the downloaded AudioSet clips of `subsets` (default: all) to `out`."""
    root = require_dir(root, "an AudioSet folder with *_segments.csv and the clips")
    found = [s for s in SUBSETS if _csv_path(root, s)]
    clips = find_audio(root)
    wav, labels, subset_of = {}, {}, {}
    problems, missing = Problems(), 0
    for subset in select_subsets(subsets, found, "AudioSet", root):
        for _, ytid, start, end, mids in read_segments(_csv_path(root, subset), problems):
            stem = next((c for c in candidate_stems(ytid, start, end) if c in clips), None)
            if stem is None:
                missing += 1
                continue
            utt = f"Y{ytid}_{round(start * 1000)}"
            wav[utt], subset_of[utt] = clips[stem], subset
            if mids:
                labels[utt] = mids
    problems.raise_if_any(f"AudioSet {root}")
    if missing:
        logger.warning("audioset: %d listed segments have no clip under %s (not downloaded)",
                       missing, root)
    if not wav:
        raise DataDirError(f"{root}: none of the listed AudioSet clips was found "
                           "(see usad2.data.corpora.audioset for the file names searched)")
    return write_corpus(out, "audioset", "audio", wav,
                        labels={"labels": labels, "subset": subset_of})
