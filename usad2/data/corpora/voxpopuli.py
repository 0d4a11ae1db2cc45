"""VoxPopuli (European Parliament speech) -> Kaldi data dir, domain speech.

Layout read (as written by the corpus's own `voxpopuli.get_asr_data` / `get_unlabelled_data`):
- transcribed: `<root>/transcribed_data/<lang>/asr_<split>.tsv` (split train, dev, test; tab
  separated, columns id, raw_text, normalized_text, speaker_id, split, gender,
  is_gold_transcript, accent) and the audio `<root>/transcribed_data/<lang>/<year>/<id>.ogg`
  with year = the id's first four characters;
- unlabelled (subset `unlabelled`): `<root>/unlabelled_data/<lang>/<year>/<segment>.ogg`.
Output: wav.scp, utt2domain speech; for transcribed subsets also text (normalized_text),
utt2spk, utt2gender, utt2accent (when not `None`), and utt2subset for every utterance.
"""
import os

from usad2.data.corpora.common import (clean_text, find_audio, read_tsv, require_dir,
                                       select_subsets, token, write_corpus)
from usad2.data.kaldi_text import Problems

SPLITS = ("train", "dev", "test")
REQUIRED = ("id", "normalized_text", "speaker_id")


def _transcribed(base, split, tables, problems):
    tsv = os.path.join(base, f"asr_{split}.tsv")
    for number, row, _ in read_tsv(tsv, REQUIRED):
        utt = row["id"]
        audio = os.path.join(base, utt[:4], f"{utt}.ogg")
        if not os.path.isfile(audio):
            problems.add(tsv, number, f"audio {audio} does not exist")
            continue
        tables["wav"][utt] = audio
        tables["text"][utt] = clean_text(row["normalized_text"])
        tables["spk"][utt] = row["speaker_id"]
        tables["subset"][utt] = split
        for label in ("gender", "accent"):
            value = token(row.get(label))
            if value and value != "None":
                tables[label][utt] = value


def prepare_voxpopuli(root, out, subsets=("train",), lang="en"):
    """Write the data dir of VoxPopuli `subsets` (train/dev/test/unlabelled) of `lang` to `out`."""
    root = require_dir(root, "a VoxPopuli folder holding transcribed_data/ or unlabelled_data/")
    base = os.path.join(root, "transcribed_data", lang)
    found = [s for s in SPLITS if os.path.isfile(os.path.join(base, f"asr_{s}.tsv"))]
    unlabelled = os.path.join(root, "unlabelled_data", lang)
    found += ["unlabelled"] if os.path.isdir(unlabelled) else []
    tables = {name: {} for name in ("wav", "text", "spk", "subset", "gender", "accent")}
    problems = Problems()
    chosen = select_subsets(subsets, found, f"VoxPopuli ({lang})", root)
    for subset in chosen:
        if subset == "unlabelled":
            for utt, path in find_audio(unlabelled, (".ogg",)).items():
                tables["wav"][utt], tables["subset"][utt] = path, "unlabelled"
        else:
            _transcribed(base, subset, tables, problems)
    problems.raise_if_any(f"VoxPopuli {root}")
    transcribed = "unlabelled" not in chosen
    return write_corpus(out, "voxpopuli", "speech", tables["wav"],
                        text=tables["text"] if transcribed else None,
                        utt2spk=tables["spk"] if transcribed else None,
                        labels={k: tables[k] for k in ("gender", "accent", "subset")})
