"""GigaSpeech -> Kaldi data dir with segments, domain speech.

Layout read: `<root>/GigaSpeech.json` (`{"audios": [{"aid", "path", "source", "category",
"segments": [{"sid", "begin_time", "end_time", "text_tn", "subsets": ["{XL}", "{S}", ...]}]}]}`)
and the decrypted audio at `<root>/<path>` (e.g. `audio/podcast/P0000/POD0000000001.opus`).
Subsets: XS, S, M, L, XL, DEV, TEST (braces optional). Segments whose transcript is a garbage
tag (<SIL>, <MUSIC>, <NOISE>, <OTHER>) are not speech and are skipped; punctuation tags
(<COMMA>, ...) stay in the text as the corpus writes them. The whole JSON is read into memory
(several GB for the full corpus).
Output: wav.scp (one recording per audio), segments, text, utt2spk (the recording: GigaSpeech
has no speaker labels), utt2source (podcast / youtube / audiobook), utt2category,
utt2domain speech.
"""
import json
import os

from usad2.data.corpora.common import require_file, token, write_corpus
from usad2.data.kaldi_text import Problems
from usad2.errors import DataDirError

SUBSETS = ("XS", "S", "M", "L", "XL", "DEV", "TEST")
GARBAGE = ("<SIL>", "<MUSIC>", "<NOISE>", "<OTHER>")


def _wanted(subsets):
    wanted = {s.strip("{}").upper() for s in subsets}
    unknown = sorted(wanted.difference(SUBSETS))
    if unknown:
        raise DataDirError(f"GigaSpeech subset(s) {', '.join(unknown)} unknown "
                           f"(known: {', '.join(SUBSETS)})")
    return {f"{{{s}}}" for s in wanted}


def _load(meta):
    try:
        with open(meta, encoding="utf-8") as f:
            return json.load(f)["audios"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataDirError(f"{meta}: not a GigaSpeech metadata file ({e})") from None


def prepare_gigaspeech(root, out, subsets=("XS",)):
    """Write the data dir of the GigaSpeech `subsets` to `out`."""
    meta = require_file(os.path.join(os.fspath(root), "GigaSpeech.json"),
                        "the GigaSpeech metadata GigaSpeech.json")
    wanted = _wanted(subsets)
    tables = {name: {} for name in ("wav", "seg", "text", "spk", "source", "category")}
    problems = Problems()
    for index, audio in enumerate(_load(meta)):
        segs = [s for s in audio.get("segments", ()) if wanted.intersection(s.get("subsets", ()))
                and s.get("text_tn", "").strip() not in GARBAGE]
        if not segs:
            continue
        path = os.path.join(os.fspath(root), audio["path"])
        if not os.path.isfile(path):
            problems.add(meta, None, f"audio {audio['aid']} (entry {index + 1}): {path} does "
                                     "not exist")
            continue
        aid = audio["aid"]
        tables["wav"][aid] = path
        for seg in segs:
            sid = seg["sid"]
            tables["seg"][sid] = (aid, float(seg["begin_time"]), float(seg["end_time"]))
            tables["text"][sid] = " ".join(seg["text_tn"].split())
            tables["spk"][sid] = aid
            for label in ("source", "category"):
                if token(audio.get(label)):
                    tables[label][sid] = token(audio[label])
    problems.raise_if_any(f"GigaSpeech {root}")
    return write_corpus(out, "gigaspeech", "speech", tables["wav"], segments=tables["seg"],
                        text=tables["text"], utt2spk=tables["spk"],
                        labels={"source": tables["source"], "category": tables["category"]})
