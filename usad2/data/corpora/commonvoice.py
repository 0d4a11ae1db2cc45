"""Mozilla Common Voice -> Kaldi data dir, domain speech.

Layout read: `<root>/<subset>.tsv` (validated, train, dev, test, other, invalidated) and
`<root>/clips/<path>` (mp3), where root is a language folder (`cv-corpus-<version>/<lang>`);
a root holding `<lang>/` is accepted with `lang`. TSV columns used: client_id, path, sentence
(required), gender, age, accents (or accent, in old releases), locale (when present; absent
values give no label). Ids are the clip file stems (`common_voice_en_123`), so one clip listed
in two requested subsets is one utterance.
Output: wav.scp, text, utt2spk (client_id), utt2gender, utt2age, utt2accent, utt2lang,
utt2domain speech.
"""
import os

from usad2.data.corpora.common import (clean_text, read_tsv, require_dir, select_subsets, token,
                                       write_corpus)
from usad2.data.kaldi_text import Problems

SUBSETS = ("validated", "train", "dev", "test", "other", "invalidated")
REQUIRED = ("client_id", "path", "sentence")


def _language_root(root, lang):
    if lang and os.path.isdir(os.path.join(root, lang)):
        return os.path.join(root, lang)
    return root


def prepare_commonvoice(root, out, subsets=("validated",), lang=None):
    """Write the data dir of the Common Voice `subsets` (TSV names) to `out`."""
    root = _language_root(require_dir(root, "a Common Voice language folder"), lang)
    found = [s for s in SUBSETS if os.path.isfile(os.path.join(root, f"{s}.tsv"))]
    tables = {name: {} for name in ("wav", "text", "spk", "gender", "age", "accent", "lang")}
    problems = Problems()
    for subset in select_subsets(subsets, found, "Common Voice", root):
        tsv = os.path.join(root, f"{subset}.tsv")
        for number, row, _ in read_tsv(tsv, REQUIRED):
            clip = os.path.join(root, "clips", row["path"])
            if not os.path.isfile(clip):
                problems.add(tsv, number, f"clip {clip} does not exist")
                continue
            utt = os.path.splitext(row["path"])[0]
            tables["wav"][utt] = clip
            tables["text"][utt] = clean_text(row["sentence"])
            tables["spk"][utt] = row["client_id"]
            for label, column in (("gender", "gender"), ("age", "age"), ("lang", "locale"),
                                  ("accent", "accents" if "accents" in row else "accent")):
                value = token(row.get(column))
                if value:
                    tables[label][utt] = value
    problems.raise_if_any(f"Common Voice {root}")
    labels = {k: tables[k] for k in ("gender", "age", "accent", "lang")}
    return write_corpus(out, "commonvoice", "speech", tables["wav"], text=tables["text"],
                        utt2spk=tables["spk"], labels=labels)
