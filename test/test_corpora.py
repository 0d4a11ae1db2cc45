"""Real-corpus preparers on small fake trees that copy each corpus's published naming."""
import json

import numpy as np
import pytest
import soundfile

from usad2.bin import prepare_corpus as prepare_cli
from usad2.bin.prepare_corpus import prepare_corpus
from usad2.data.corpora import (prepare_audioset, prepare_commonvoice, prepare_gigaspeech,
                                prepare_jamendo, prepare_librilight, prepare_librispeech,
                                prepare_voxpopuli)
from usad2.data.corpora.audioset import candidate_stems
from usad2.data.corpora.librilight import merge_activity
from usad2.data.datadir import load_data_dir
from usad2.data.format import FormatConfig, format_data
from usad2.errors import ConfigError, DataDirError


def _audio(path, seconds=0.3, sr=16000, fmt=None, subtype=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    soundfile.write(str(path), 0.3 * rng.standard_normal(int(seconds * sr)), sr, format=fmt,
                    subtype=subtype)
    return str(path)


def _loaded(out):
    return load_data_dir(out, check_audio=True)


# ------------------------------------------------------------------------------- LibriSpeech

# Each fake_<corpus>(root) writes a tiny corpus in the corpus's published layout under `root`
# and returns it; the recipe's stage-1 test (test_recipe_corpora.py) prepares the same trees.

LIBRISPEECH_CHAPTERS = (("train-clean-100", "103", "1240", 2), ("dev-clean", "84", "121123", 1))


def fake_librispeech(root, chapters=LIBRISPEECH_CHAPTERS):
    for subset, spk, chapter, n in chapters:
        folder = root / subset / spk / chapter
        lines = []
        for k in range(n):
            utt = f"{spk}-{chapter}-{k:04d}"
            _audio(folder / f"{utt}.flac")
            lines.append(f"{utt} CHAPTER ONE WORD {k}\n")
        (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    (root / "SPEAKERS.TXT").write_text(
        "; Some comments\n;ID  |SEX| SUBSET           |MINUTES| NAME\n"
        "84   | F | dev-clean        |  8.02 | Christie Nowak\n"
        "103  | F | train-clean-100  | 25.03 | Karen Savage\n")
    return root


@pytest.fixture
def librispeech(tmp_path):
    return fake_librispeech(tmp_path / "LibriSpeech")


def test_librispeech(librispeech, tmp_path):
    prepare_librispeech(librispeech, tmp_path / "out")
    data = _loaded(tmp_path / "out")
    assert data.utt_ids == ["103-1240-0000", "103-1240-0001", "84-121123-0000"]
    assert data.table("text")["103-1240-0001"] == "CHAPTER ONE WORD 1"
    assert data.utt2spk["84-121123-0000"] == "84"
    assert data.table("utt2gender")["103-1240-0000"] == ("f",)
    assert data.table("utt2subset")["84-121123-0000"] == ("dev-clean",)
    assert {data.domain(u) for u in data.utt_ids} == {"speech"}
    prepare_librispeech(librispeech, tmp_path / "dev", subsets=["dev-clean"])
    assert _loaded(tmp_path / "dev").utt_ids == ["84-121123-0000"]


def test_librispeech_errors_name_file_and_line(librispeech, tmp_path):
    trans = librispeech / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.write_text(trans.read_text() + "84-121123-0009 NO AUDIO\n")
    with pytest.raises(DataDirError, match=r"84-121123.trans.txt:2: audio .*0009.flac does not"):
        prepare_librispeech(librispeech, tmp_path / "out")
    with pytest.raises(DataDirError, match="subset\\(s\\) train-other-500 not found"):
        prepare_librispeech(librispeech, tmp_path / "out", subsets=["train-other-500"])
    with pytest.raises(DataDirError, match="not a directory"):
        prepare_librispeech(tmp_path / "nope", tmp_path / "out")


def test_prepared_librispeech_formats(librispeech, tmp_path):
    prepare_librispeech(librispeech, tmp_path / "data")
    summary = format_data(tmp_path / "data", tmp_path / "dump", FormatConfig(min_seconds=0.1))
    assert summary["output_utterances"] == 3
    dumped = _loaded(tmp_path / "dump")
    assert dumped.table("text")["84-121123-0000"] == "CHAPTER ONE WORD 0"
    assert dumped.table("utt2num_samples")["84-121123-0000"] == 4800


# ------------------------------------------------------------------------------- Libri-Light

def test_merge_activity():
    assert merge_activity([[0, 5], [6, 12], [13, 30], [31, 32]], 20) == [(0, 12), (13, 32)]
    assert merge_activity([[0, 45]], 20) == [(0, 20), (20, 40), (40, 45)]
    assert merge_activity([[3, 3], [1, 2]], 20) == [(1, 2)]


def fake_librilight(root):
    book = root / "small" / "100" / "sea_fairies_0812_librivox_64kb_mp3"
    _audio(book / "01_baum_sea_fairies_64kb.flac", seconds=3.0, sr=8000)
    (book / "01_baum_sea_fairies_64kb.json").write_text(json.dumps(
        {"speaker": "100", "voice_activity": [[0.1, 0.9], [1.0, 1.8], [2.0, 2.9]]}))
    _audio(book / "02_baum_sea_fairies_64kb.flac", seconds=2.5, sr=8000)  # no json
    return root


def test_librilight(tmp_path):
    root = fake_librilight(tmp_path / "librilight")
    prepare_librilight(root, tmp_path / "out", chunk_seconds=1.0)
    data = _loaded(tmp_path / "out")
    rec1 = "100-sea_fairies_0812_librivox_64kb_mp3-01_baum_sea_fairies_64kb"
    rec2 = rec1.replace("-01_", "-02_")
    assert [(u, s.start, s.end) for u, s in sorted(data.segments.items())] == [
        (f"{rec1}-0000", 0.1, 0.9), (f"{rec1}-0001", 1.0, 1.8), (f"{rec1}-0002", 2.0, 2.9),
        (f"{rec2}-0000", 0.0, 1.0), (f"{rec2}-0001", 1.0, 2.0), (f"{rec2}-0002", 2.0, 2.5)]
    assert data.utt2spk[f"{rec2}-0001"] == "100" and data.domain(f"{rec1}-0000") == "speech"


# ------------------------------------------------------------------------------ Common Voice

CV_HEADER = ("client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes"
             "\tage\tgender\taccents\tvariant\tlocale\tsegment\n")


def fake_commonvoice(root):
    clips = root / "en" / "clips"
    for k in (1, 2, 3):
        _audio(clips / f"common_voice_en_{k}.mp3", sr=48000, fmt="MP3")
    (root / "en" / "validated.tsv").write_text(
        CV_HEADER
        + "abc123\tcommon_voice_en_1.mp3\ts1\tHello  there.\t\t2\t0\ttwenties"
          "\tmale_masculine\tUnited States English\t\ten\t\n"
        + "def456\tcommon_voice_en_2.mp3\ts2\t\"Quoted\" words\t\t2\t0\t\t\t\t\ten\t\n")
    (root / "en" / "test.tsv").write_text(
        CV_HEADER + "def456\tcommon_voice_en_3.mp3\ts3\tThird\t\t2\t0\t\t\t\t\ten\t\n")
    return root


def test_commonvoice(tmp_path):
    root = fake_commonvoice(tmp_path / "cv-corpus-17.0-2024-03-15")
    prepare_commonvoice(root, tmp_path / "out", lang="en")
    data = _loaded(tmp_path / "out")
    assert data.utt_ids == ["common_voice_en_1", "common_voice_en_2"]
    assert data.table("text") == {"common_voice_en_1": "Hello there.",
                                  "common_voice_en_2": '"Quoted" words'}
    assert data.utt2spk["common_voice_en_2"] == "def456"
    assert data.table("utt2gender") == {"common_voice_en_1": ("male_masculine",)}
    assert data.table("utt2accent") == {"common_voice_en_1": ("United_States_English",)}
    assert data.table("utt2lang")["common_voice_en_2"] == ("en",)
    prepare_commonvoice(root / "en", tmp_path / "both", subsets=["validated", "test"])
    assert len(_loaded(tmp_path / "both")) == 3


# --------------------------------------------------------------------------------- VoxPopuli

def fake_voxpopuli(root):
    base = root / "transcribed_data" / "en"
    header = ("id\traw_text\tnormalized_text\tspeaker_id\tsplit\tgender\t"
              "is_gold_transcript\taccent\n")
    rows = ["20180418-0900-PLENARY-4-en_20180418-10:28:16_2\tThank You.\tthank you\t4405"
            "\ttrain\tfemale\tTrue\tNone\n",
            "20190115-0900-PLENARY-12-en_20190115-17:04:35_6\tYes\tyes\t124737\ttrain\tmale"
            "\tFalse\tNone\n"]
    for row in rows:
        utt = row.split("\t")[0]
        _audio(base / utt[:4] / f"{utt}.ogg", fmt="OGG", subtype="VORBIS")
    base.mkdir(parents=True, exist_ok=True)
    (base / "asr_train.tsv").write_text(header + "".join(rows))
    _audio(root / "unlabelled_data" / "en" / "2019" / "20190115-0900-PLENARY_en_3.ogg",
           fmt="OGG", subtype="VORBIS")
    return root


def test_voxpopuli(tmp_path):
    fake_voxpopuli(tmp_path / "vp")
    prepare_voxpopuli(tmp_path / "vp", tmp_path / "out")
    data = _loaded(tmp_path / "out")
    utt = "20180418-0900-PLENARY-4-en_20180418-10:28:16_2"
    assert data.table("text")[utt] == "thank you" and data.utt2spk[utt] == "4405"
    assert data.table("utt2gender")[utt] == ("female",) and data.table("utt2accent") is None
    prepare_voxpopuli(tmp_path / "vp", tmp_path / "unl", subsets=["unlabelled"])
    unl = _loaded(tmp_path / "unl")
    assert unl.utt_ids == ["20190115-0900-PLENARY_en_3"] and unl.table("text") is None
    assert unl.domain("20190115-0900-PLENARY_en_3") == "speech"


# -------------------------------------------------------------------------------- GigaSpeech

def fake_gigaspeech(root):
    _audio(root / "audio" / "podcast" / "P0000" / "POD0000000001.opus", seconds=3.0,
           fmt="OGG", subtype="OPUS")
    _audio(root / "audio" / "youtube" / "P0001" / "YOU0000000002.opus", seconds=1.0,
           fmt="OGG", subtype="OPUS")
    seg = lambda sid, b, e, text, subs: {"sid": sid, "begin_time": b, "end_time": e,
                                         "text_tn": text, "subsets": subs}
    meta = {"audios": [
        {"aid": "POD0000000001", "path": "audio/podcast/P0000/POD0000000001.opus",
         "source": "podcast", "category": "Arts and Culture", "segments": [
             seg("POD0000000001_S0000000", 0.2, 1.3, "HELLO <COMMA> WORLD", ["{XL}", "{XS}"]),
             seg("POD0000000001_S0000001", 1.4, 2.0, "<MUSIC>", ["{XL}", "{XS}"]),
             seg("POD0000000001_S0000002", 2.0, 2.9, "ONLY IN XL", ["{XL}"])]},
        {"aid": "YOU0000000002", "path": "audio/youtube/P0001/YOU0000000002.opus",
         "source": "youtube", "category": "Education", "segments": [
             seg("YOU0000000002_S0000000", 0.0, 0.8, "SECOND", ["{XL}"])]}]}
    (root / "GigaSpeech.json").write_text(json.dumps(meta))
    return root


def test_gigaspeech(tmp_path):
    root = fake_gigaspeech(tmp_path / "GigaSpeech")
    prepare_gigaspeech(root, tmp_path / "xs", subsets=["XS"])
    xs = _loaded(tmp_path / "xs")
    assert xs.utt_ids == ["POD0000000001_S0000000"] and list(xs.wav_scp) == ["POD0000000001"]
    assert xs.table("text")["POD0000000001_S0000000"] == "HELLO <COMMA> WORLD"
    assert xs.table("utt2category")["POD0000000001_S0000000"] == ("Arts_and_Culture",)
    prepare_gigaspeech(root, tmp_path / "xl", subsets=["{XL}"])
    xl = _loaded(tmp_path / "xl")
    assert len(xl) == 3 and xl.table("utt2source")["YOU0000000002_S0000000"] == ("youtube",)
    assert xl.source("POD0000000001_S0000002").start == 2.0
    with pytest.raises(DataDirError, match="subset\\(s\\) XXL unknown"):
        prepare_gigaspeech(root, tmp_path / "bad", subsets=["XXL"])


# ---------------------------------------------------------------------------------- AudioSet

def fake_audioset(root):
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "balanced_train_segments.csv").write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"\n'
        '-0RWZT-miFs, 420.000, 430.000, "/m/03v3yw"\n'
        'zzNotLoaded, 0.000, 10.000, "/m/04rlf"\n')
    (root / "eval_segments.csv").write_text(
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '0Ev1lGwKx0k, 10.000, 20.000, "/m/04rlf"\n')
    _audio(root / "audio" / "balanced" / "Y--PJHxphWEs_30.000_40.000.wav")
    _audio(root / "audio" / "balanced" / "-0RWZT-miFs_420000.flac", sr=44100)
    _audio(root / "audio" / "eval" / "Y0Ev1lGwKx0k.wav")
    return root


def test_audioset(tmp_path):
    root = fake_audioset(tmp_path / "audioset")
    prepare_audioset(root, tmp_path / "out")
    data = _loaded(tmp_path / "out")
    assert data.utt_ids == ["Y--PJHxphWEs_30000", "Y-0RWZT-miFs_420000", "Y0Ev1lGwKx0k_10000"]
    assert data.table("utt2labels")["Y--PJHxphWEs_30000"] == ("/m/09x0r", "/t/dd00088")
    assert data.table("utt2subset")["Y0Ev1lGwKx0k_10000"] == ("eval",)
    assert {data.domain(u) for u in data.utt_ids} == {"audio"}
    assert candidate_stems("abc", 30, 40)[:3] == ["Yabc_30.000_40.000", "abc_30.000_40.000",
                                                  "abc_30000"]
    (root / "eval_segments.csv").write_text('0Ev1lGwKx0k, 10.000, "/m/04rlf"\n')
    with pytest.raises(DataDirError, match="eval_segments.csv:1: expected 4 fields"):
        prepare_audioset(root, tmp_path / "out2", subsets=["eval"])


# ------------------------------------------------------------------------------- MTG-Jamendo

def fake_jamendo(root):
    (root / "data").mkdir(parents=True)
    (root / "data" / "autotagging.tsv").write_text(
        "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\n"
        "track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t124.6\tgenre---punkrock\n"
        "track_0000382\tartist_000020\talbum_000046\t82/382.mp3\t211.1\tgenre---rock"
        "\tinstrument---electricguitar\tmood/theme---energetic\tgenre---pop\n")
    _audio(root / "audio" / "14" / "214.mp3", fmt="MP3")
    _audio(root / "audio" / "82" / "382.low.mp3", fmt="MP3")
    return root


def test_jamendo(tmp_path):
    root = fake_jamendo(tmp_path / "mtg-jamendo-dataset")
    prepare_jamendo(root, tmp_path / "out")
    data = _loaded(tmp_path / "out")
    assert data.utt_ids == ["track_0000214", "track_0000382"]
    assert data.table("utt2genre")["track_0000382"] == ("rock", "pop")
    assert data.table("utt2instrument") == {"track_0000382": ("electricguitar",)}
    assert data.table("utt2mood") == {"track_0000382": ("energetic",)}
    assert data.utt2spk["track_0000214"] == "artist_000014"
    assert data.domain("track_0000214") == "music"
    with open(root / "data" / "autotagging.tsv", "a") as f:
        f.write("track_0000999\tartist_1\talbum_1\t99/999.mp3\t1.0\tgenre---rock\n")
    with pytest.raises(DataDirError, match="autotagging.tsv:4: audio 99/999.mp3 not found"):
        prepare_jamendo(root, tmp_path / "out")


# ------------------------------------------------------------------------------------- CLI

def test_prepare_corpus_cli_and_options(librispeech, tmp_path):
    prepare_cli.main(["--corpus", "librispeech", "--root", str(librispeech), "--out",
                      str(tmp_path / "cli"), "--subsets", "train-clean-100"])
    assert len(_loaded(tmp_path / "cli")) == 2
    with pytest.raises(ConfigError, match="--lang does not apply to corpus librispeech"):
        prepare_corpus("librispeech", librispeech, tmp_path / "x", lang="en")
    with pytest.raises(ConfigError, match="unknown corpus 'timit'"):
        prepare_corpus("timit", librispeech, tmp_path / "x")
