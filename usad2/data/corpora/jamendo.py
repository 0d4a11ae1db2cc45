"""MTG-Jamendo (music auto-tagging) -> Kaldi data dir, domain music.

Layout read: the metadata TSVs of the dataset's repository under `<root>/data/` (or `<root>`):
`autotagging.tsv` and its variants (`autotagging_genre.tsv`, `raw_30s.tsv`, the split files
`splits/split-0/autotagging-train.tsv`, ...), tab separated with header
`TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS`, the TAGS column continuing over any further
tab-separated fields, each tag `<category>---<tag>` (genre, instrument, mood/theme); and the
audio at `<root>/audio/<PATH>` or `<root>/<PATH>` (PATH like `14/214.mp3`; the low-quality
release's `14/214.low.mp3` is accepted too). Subsets are TSV paths relative to the data folder
(default `autotagging.tsv`).
Output: wav.scp, utt2genre, utt2instrument, utt2mood (multi-label), utt2spk (the artist),
utt2album, utt2domain music. Ids are the TRACK_IDs (`track_0000214`).
"""
import os

from usad2.data.corpora.common import read_tsv, require_dir, token, write_corpus
from usad2.data.kaldi_text import Problems
from usad2.errors import DataDirError

REQUIRED = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH")
CATEGORIES = {"genre": "genre", "instrument": "instrument", "mood/theme": "mood"}


def _data_folder(root):
    folder = os.path.join(root, "data")
    return folder if os.path.isdir(folder) else root


def _audio_path(root, rel):
    low = rel[:-4] + ".low.mp3" if rel.endswith(".mp3") else rel
    for base in (os.path.join(root, "audio"), root):
        for name in (rel, low):
            if os.path.isfile(os.path.join(base, name)):
                return os.path.join(base, name)
    return None


def _add_tags(utt, tags, tables, tsv, number, problems):
    for tag in tags:
        category, sep, value = tag.strip().partition("---")
        if not sep or category not in CATEGORIES or not token(value):
            problems.add(tsv, number, f"tag {tag!r} is not <genre|instrument|mood/theme>---<tag>")
            continue
        tables[CATEGORIES[category]].setdefault(utt, []).append(token(value))


def prepare_jamendo(root, out, subsets=("autotagging.tsv",)):
    """Write the data dir of the MTG-Jamendo tracks listed in the `subsets` TSVs to `out`."""
    root = require_dir(root, "an MTG-Jamendo folder with data/*.tsv and the audio")
    tables = {name: {} for name in ("wav", "spk", "album", "genre", "instrument", "mood")}
    problems = Problems()
    for subset in subsets:
        tsv = os.path.join(_data_folder(root), subset)
        if not os.path.isfile(tsv):
            raise DataDirError(f"{tsv}: missing (MTG-Jamendo metadata TSV)")
        for number, row, more in read_tsv(tsv, REQUIRED):
            audio = _audio_path(root, row["PATH"])
            if audio is None:
                problems.add(tsv, number, f"audio {row['PATH']} not found under "
                                          f"{os.path.join(root, 'audio')} or {root}")
                continue
            utt = row["TRACK_ID"]
            tables["wav"][utt], tables["spk"][utt] = audio, row["ARTIST_ID"]
            tables["album"][utt] = row["ALBUM_ID"]
            tags = ([row["TAGS"]] if row.get("TAGS") else []) + more
            _add_tags(utt, tags, tables, tsv, number, problems)
    problems.raise_if_any(f"MTG-Jamendo {root}")
    labels = {k: tables[k] for k in ("album", "genre", "instrument", "mood")}
    return write_corpus(out, "jamendo", "music", tables["wav"], utt2spk=tables["spk"],
                        labels=labels)
