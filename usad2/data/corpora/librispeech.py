"""LibriSpeech (OpenSLR 12) -> Kaldi data dir, domain speech.

Layout read: `<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` with one
`<speaker>-<chapter>.trans.txt` per chapter (`<utt id> <TRANSCRIPT>` per line), subsets such
as train-clean-100, dev-clean, test-other; `<root>/SPEAKERS.TXT` (`;` comments, then
`ID | SEX | SUBSET | MINUTES | NAME`) gives utt2gender (m / f) when present.
Output: wav.scp, text, utt2spk (the speaker), utt2gender, utt2subset, utt2domain speech.
"""
import os

from usad2.data.corpora.common import require_dir, select_subsets, write_corpus
from usad2.data.kaldi_text import Problems

SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100",
           "train-clean-360", "train-other-500")


def read_speakers(path):
    """{speaker id: sex (m/f)} from SPEAKERS.TXT; {} when the file is absent."""
    genders = {}
    if not os.path.isfile(path):
        return genders
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = [x.strip() for x in line.split("|")]
            if line.startswith(";") or len(fields) < 2 or not fields[0]:
                continue
            genders[fields[0]] = fields[1].lower()
    return genders


def _read_chapter(trans, problems, tables, subset):
    """Add the utterances of one `.trans.txt` file (audio checked to exist) to `tables`."""
    directory = os.path.dirname(trans)
    with open(trans, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            utt, _, words = line.rstrip("\n").partition(" ")
            flac = os.path.join(directory, utt + ".flac")
            if not utt:
                problems.add(trans, number, "empty line")
            elif utt.count("-") != 2:
                problems.add(trans, number, f"id {utt!r} is not <speaker>-<chapter>-<utt>")
            elif not os.path.isfile(flac):
                problems.add(trans, number, f"audio {flac} does not exist")
            else:
                tables["wav"][utt] = flac
                tables["text"][utt] = words.strip()
                tables["spk"][utt] = utt.split("-")[0]
                tables["subset"][utt] = subset


def prepare_librispeech(root, out, subsets=None):
    """Write the data dir of the LibriSpeech `subsets` (default: every subset present) to `out`."""
    root = require_dir(root, "a LibriSpeech folder holding train-clean-100/, dev-clean/, ...")
    found = [s for s in SUBSETS if os.path.isdir(os.path.join(root, s))]
    tables = {"wav": {}, "text": {}, "spk": {}, "subset": {}}
    problems = Problems()
    for subset in select_subsets(subsets, found, "LibriSpeech", root):
        for directory, subdirs, files in os.walk(os.path.join(root, subset)):
            subdirs.sort()
            for name in sorted(files):
                if name.endswith(".trans.txt"):
                    _read_chapter(os.path.join(directory, name), problems, tables, subset)
    problems.raise_if_any(f"LibriSpeech {root}")
    genders = read_speakers(os.path.join(root, "SPEAKERS.TXT"))
    utt2gender = {u: genders[s] for u, s in tables["spk"].items() if s in genders}
    return write_corpus(out, "librispeech", "speech", tables["wav"], text=tables["text"],
                        utt2spk=tables["spk"],
                        labels={"gender": utt2gender, "subset": tables["subset"]})
