"""Kaldi data dirs: round trip, every validation error with its exact file:line, combine,
speakers, pipes, subsets, atomic writes and the two command lines."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from usad2.bin import combine_data as combine_cli
from usad2.bin import validate_data_dir as validate_cli
from usad2.data.combine import combine_data, combine_datadirs
from usad2.data.consistency import audio_duration
from usad2.data.datadir import AudioSource, DataDir, load_data_dir
from usad2.data.kinds import Segment
from usad2.data.validate import summarize, validate_data_dir
from usad2.errors import AudioError, DataDirError


@pytest.fixture
def wav(tmp_path):
    """A real 2.0 s, 16 kHz mono wav file."""
    path = tmp_path / "audio" / "rec 1.wav"  # a space in the path: kept by wav.scp
    path.parent.mkdir()
    soundfile.write(path, np.zeros(32000, dtype="float32"), 16000)
    return str(path)


def base_dir(wav):
    """A valid data dir using every file kind."""
    return DataDir(
        {"r1": wav, "r2": wav},
        segments={"u1": ("r1", 0, 1.5), "u2": ("r1", 1.5, -1), "u3": ("r2", 0.25, 1.0)},
        utt2spk={"u1": "s1", "u2": "s1", "u3": "s2"},
        utt2dur={"u1": 1.5, "u2": 0.5, "u3": 0.75},
        utt2num_samples={"u1": 24000, "u2": 8000, "u3": 12000},
        utt2domain={"u1": "speech", "u2": "music", "u3": "audio"},
        utt2weight={"u1": 1.0, "u2": 2.5, "u3": 0.125},
        text={"u1": "hello world", "u2": "", "u3": "x"},
        reco2dur={"r1": 2.0, "r2": 2.0},
        utt2pitch={"u1": "60 64 67", "u3": ("72",)},
    )


def write_base(tmp_path, wav):
    out = tmp_path / "data"
    base_dir(wav).write(out)
    return out


def problems_of(path, **kwargs):
    with pytest.raises(DataDirError) as info:
        load_data_dir(path, **kwargs)
    return info.value.problems


# ---- round trip ---------------------------------------------------------------------------

def test_write_then_load_round_trips_every_file(tmp_path, wav):
    data = base_dir(wav)
    out = write_base(tmp_path, wav)
    assert sorted(os.listdir(out)) == ["reco2dur", "segments", "spk2utt", "text", "utt2domain",
                                       "utt2dur", "utt2num_samples", "utt2pitch", "utt2spk",
                                       "utt2weight", "wav.scp"]
    assert (out / "segments").read_text() == "u1 r1 0.0 1.5\nu2 r1 1.5 -1\nu3 r2 0.25 1.0\n"
    assert (out / "spk2utt").read_text() == "s1 u1 u2\ns2 u3\n"
    assert (out / "text").read_text() == "u1 hello world\nu2\nu3 x\n"
    assert (out / "utt2pitch").read_text() == "u1 60 64 67\nu3 72\n"
    assert (out / "wav.scp").read_text() == f"r1 {wav}\nr2 {wav}\n"
    loaded = load_data_dir(out, check_audio=True)
    assert loaded == data
    assert loaded.utt_ids == ["u1", "u2", "u3"]
    assert loaded.table("utt2pitch") == {"u1": ("60", "64", "67"), "u3": ("72",)}
    assert loaded.source("u2") == AudioSource(wav, 1.5, None, False)
    assert loaded.source("u3") == AudioSource(wav, 0.25, 1.0, False)
    assert loaded.domain("u2") == "music"


def test_domain_posteriors_round_trip_and_resolve_by_domain_source(tmp_path, wav):
    from usad2.data.catalog import load_catalog
    data = base_dir(wav)
    data.tables["utt2domain"]["u3"] = "unknown"
    posts = {"u1": (1.0, 0.0, 0.0), "u2": (0.125, 0.25, 0.625), "u3": (0.2, 0.7, 0.1)}
    data = DataDir(data.wav_scp, data.segments, utt2domain=data.table("utt2domain"),
                   utt2domain_post=posts)
    data.write(tmp_path / "d")
    assert (tmp_path / "d" / "utt2domain_post").read_text() == \
        "u1 1.0 0.0 0.0\nu2 0.125 0.25 0.625\nu3 0.2 0.7 0.1\n"
    loaded = load_data_dir(tmp_path / "d")
    assert loaded.table("utt2domain_post") == posts
    catalog = load_catalog(tmp_path / "d")  # default: labels; the file is no task label
    assert catalog.domains == ["speech", "music", "unknown"] and "domain_post" not in catalog.labels
    assert load_catalog(tmp_path / "d", domain_source="infer").domains == [posts[u] for u in ("u1", "u2", "u3")]
    assert load_catalog(tmp_path / "d", domain_source="mixed").domains == ["speech", "music", posts["u3"]]
    (tmp_path / "d" / "utt2domain_post").unlink()
    with pytest.raises(DataDirError, match="needs utt2domain_post for 1 utterance.*'u3'.*infer_domains"):
        load_catalog(tmp_path / "d", domain_source="mixed")
    with pytest.raises(DataDirError, match="domain source 'guess'"):
        load_catalog(tmp_path / "d", domain_source="guess")
    with pytest.raises(DataDirError, match="utt2domain_post: bad value"):
        DataDir({"r": wav}, utt2domain_post={"r": (0.5, 0.5)})


def test_without_segments_wav_ids_are_utterances(tmp_path, wav):
    DataDir({"b": wav, "a": wav}).write(tmp_path / "d")
    loaded = load_data_dir(tmp_path / "d")
    assert loaded.utt_ids == ["a", "b"]
    assert loaded.source("b") == AudioSource(wav)
    assert loaded.domain("a") == "unknown"
    assert loaded.spk2utt is None


def test_c_locale_order_is_byte_order(tmp_path, wav):
    ids = ["b", "B", "a_1", "a-1", "a1", "é", "Z"]
    DataDir({i: wav for i in ids}).write(tmp_path / "d")
    lines = (tmp_path / "d" / "wav.scp").read_bytes().splitlines()
    keys = [line.split(b" ")[0] for line in lines]
    assert keys == sorted(k.encode() for k in ids)
    assert [k.decode() for k in keys] == ["B", "Z", "a-1", "a1", "a_1", "b", "é"]


def test_trailing_whitespace_and_missing_final_newline_are_accepted(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "utt2domain").write_text("u1 speech  \nu2\tmusic\t\nu3   audio")
    assert load_data_dir(out).table("utt2domain") == {"u1": "speech", "u2": "music",
                                                      "u3": "audio"}


# ---- speakers -------------------------------------------------------------------------------

def test_utt2spk_is_derived_from_spk2utt(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "utt2spk").unlink()
    (out / "spk2utt").write_text("s1 u1 u2\ns2 u3\n")
    assert load_data_dir(out).utt2spk == {"u1": "s1", "u2": "s1", "u3": "s2"}


def test_spk2utt_is_derived_from_utt2spk(wav):
    data = DataDir({"b": wav, "a": wav, "c": wav}, utt2spk={"a": "y", "b": "x", "c": "x"})
    assert data.spk2utt == {"x": ("b", "c"), "y": ("a",)}
    assert DataDir({"a": wav}, spk2utt={"k": "a"}).utt2spk == {"a": "k"}


def test_spk2utt_disagreeing_with_utt2spk(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "spk2utt").write_text("s1 u1\ns2 u2 u3\n")
    found = problems_of(out)
    assert f"{out}/spk2utt:2: utterance 'u2' is listed under speaker 's2' but utt2spk:2 gives " \
           "'s1'" in found
    (out / "spk2utt").write_text("s1 u1 u2\ns2 u3 u9\n")
    assert f"{out}/spk2utt:2: utterance 'u9' (speaker 's2') is not in utt2spk" in problems_of(out)
    (out / "spk2utt").write_text("s1 u1 u2\n")
    assert f"{out}/utt2spk:3: utterance 'u3' is missing from spk2utt" in problems_of(out)
    (out / "spk2utt").write_text("s1 u1 u2\ns2 u3 u1\n")
    assert f"{out}/spk2utt:2: utterance 'u1' is listed twice (also under speaker 's1' on " \
           "line 1)" in problems_of(out)


# ---- every validation error names file and line ------------------------------------------------

ERROR_CASES = [
    ("utt2spk", "u1 s1\nu1 s1\nu2 s1\nu3 s2\n", 2, "duplicate id 'u1' (first on line 1)"),
    ("utt2spk", "u2 s1\nu1 s1\nu3 s2\n", 2,
     "ids not sorted in C-locale order: 'u1' comes after 'u2' (sort the file with `LC_ALL=C sort`)"),
    ("segments", "u1 r1 0 1.5\nu2 r1 1.5\nu3 r2 0.25 1.0\n", 2,
     "wrong number of fields: expected 4, got 3"),
    ("utt2spk", "u1 s1\nu2 s1 extra\nu3 s2\n", 2, "wrong number of fields: expected 2, got 3"),
    ("wav.scp", "r1\nr2 /x.wav\n", 1,
     "wrong number of fields: expected '<id> <path>', got only an id"),
    ("utt2domain", "u1 speech\nu2 Music\nu3 audio\n", 2,
     "unknown domain 'Music' (expected one of speech, audio, music, unknown)"),
    ("utt2domain_post", "u1 1 0 0\nu2 0.2 0.3 0.6\nu3 0 0 1\n", 2,
     "p(speech) + p(audio) + p(music) = 1.1, not 1 (tolerance 0.001)"),
    ("utt2domain_post", "u1 1 0 0\nu2 0.5 0.5 0\nu3 -0.5 0.5 1\n", 3,
     "p(speech) -0.5 is not a probability in [0, 1]"),
    ("utt2domain_post", "u1 1 0 0\nu2 0.5 x 0.5\nu3 0 0 1\n", 2, "p(audio) 'x' is not a number"),
    ("utt2domain_post", "u1 1 0\nu2 0.5 0.5 0\nu3 0 0 1\n", 1,
     "wrong number of fields: expected 4, got 3"),
    ("utt2weight", "u1 1\nu2 heavy\nu3 1\n", 2, "weight 'heavy' is not a number"),
    ("utt2weight", "u1 1\nu2 -2\nu3 1\n", 2, "weight must be positive, got '-2'"),
    ("utt2weight", "u1 1\nu2 0\nu3 1\n", 2, "weight must be positive, got '0'"),
    ("utt2weight", "u1 1\nu2 1\nu3 nan\n", 3, "weight 'nan' is not a number"),
    ("utt2weight", "u1 1\nu2 1e999\nu3 1\n", 2, "weight '1e999' is out of range"),
    ("utt2dur", "u1 1.5\nu2 0.0\nu3 0.75\n", 2, "duration must be positive, got '0.0'"),
    ("utt2dur", "u1 1.5\nu2 ٣\nu3 0.75\n", 2, "duration '٣' is not a number"),
    ("utt2num_samples", "u1 24000\nu2 8000.5\nu3 12000\n", 2,
     "number of samples '8000.5' is not a whole number below 10^18"),
    ("utt2num_samples", "u1 24000\nu2 " + "9" * 5000 + "\nu3 12000\n", 2,
     f"number of samples '{'9' * 5000}' is not a whole number below 10^18"),
    ("segments", "u1 r1 0 1.5\nu2 r1 1.5 1.5\nu3 r2 0.25 1.0\n", 2,
     "start time 1.5 is not before end time 1.5"),
    ("segments", "u1 r1 -1 1.5\nu2 r1 1.5 -1\nu3 r2 0.25 1.0\n", 1, "start time -1 is negative"),
    ("segments", "u1 r1 0 1.5\nu2 r1 1.5 -2\nu3 r2 0.25 1.0\n", 2,
     "end time -2 is negative (only -1, meaning 'to the end', is)"),
    ("segments", "u1 r1 0 1.5\nu2 r1 1.5 -1\nu3 r3 0.25 1.0\n", 3,
     "recording 'r3' of utterance 'u3' is not in wav.scp"),
    ("segments", "u1 r1 0 2.2\nu2 r1 1.5 -1\nu3 r2 0.25 1.0\n", 1,
     "segment 'u1' ends at 2.2 s, beyond the end of recording 'r1' (2.000 s)"),
    ("segments", "u1 r1 0 1.5\nu2 r1 2.5 -1\nu3 r2 0.25 1.0\n", 2,
     "segment 'u2' starts at 2.5 s, at or after the end of recording 'r1' (2.000 s)"),
    ("utt2domain", "u1 speech\nu2 music\nu3 audio\nu4 audio\n", 4,
     "utterance 'u4' is not in segments"),
    ("utt2pitch", "u1 60\nu7 61\n", 2, "utterance 'u7' is not in segments"),
    ("reco2dur", "r1 2.0\nr2 2.0\nr9 1\n", 3, "recording 'r9' is not in wav.scp"),
    ("utt2dur", "u1 1.5\nu2 0.5\nu3 0.5\n", 3,
     "duration 0.5 of 'u3' differs from its segment (0.750 s)"),
    ("utt2spk", "u1 s1\n\nu2 s1\nu3 s2\n", 2, "empty line"),
    ("utt2spk", "u1 s1\r\nu2 s1\nu3 s2\n", 1,
     "Windows (CRLF) line ending; convert the file with `dos2unix` or `tr -d '\\r'`"),
    ("utt2spk", "u1 s1\nu2 s\x001\nu3 s2\n", 2, "NUL byte at column 5"),
    ("utt2spk", "\ufeffu1 s1\nu2 s1\nu3 s2\n", 1, "byte-order mark (BOM) at column 1"),
    ("utt2spk", "u1 s1\nu2 s1\nu3 s\x1b2\n", 3, "control character '\\x1b' at column 5"),
    ("wav.scp", "r1 sox x.wav -t wav - |\nr2 /x.wav\n", 1,
     "Kaldi pipe command refused ('sox x.wav -t wav - |'); enable pipes with allow_pipes=True "
     "/ --allow_pipes true only for data dirs you trust"),
]


@pytest.mark.parametrize("name,content,line,message", ERROR_CASES,
                         ids=[f"{c[0]}-{c[3][:30]}" for c in ERROR_CASES])
def test_each_problem_names_file_and_line(tmp_path, wav, name, content, line, message):
    out = write_base(tmp_path, wav)
    (out / name).write_bytes(content.encode("utf-8"))
    found = problems_of(out)
    assert f"{out}/{name}:{line}: {message}" in found, found


def test_domain_posteriors_must_cover_every_utterance(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "utt2domain_post").write_text("u1 1 0 0\nu3 0 0 1\n")
    assert f"{out}/segments:2: utterance 'u2' has no entry in utt2domain_post" in problems_of(out)


def test_non_utf8_bytes(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "utt2spk").write_bytes(b"u1 s1\nu2 s\xff1\nu3 s2\n")
    assert f"{out}/utt2spk:2: not valid UTF-8 (byte 0xff at byte 5)" in problems_of(out)


def test_utterance_missing_from_a_file_names_the_segments_line(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "utt2spk").write_text("u1 s1\nu3 s2\n")
    (out / "spk2utt").write_text("s1 u1\ns2 u3\n")
    assert problems_of(out) == [f"{out}/segments:2: utterance 'u2' has no entry in utt2spk"]


def test_missing_audio_file_only_with_audio_check(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "wav.scp").write_text(f"r1 {wav}\nr2 {tmp_path}/gone.wav\n")
    (out / "reco2dur").unlink()
    assert load_data_dir(out).wav_scp["r2"] == f"{tmp_path}/gone.wav"
    assert problems_of(out, check_audio=True) == [
        f"{out}/wav.scp:2: audio file '{tmp_path}/gone.wav' of recording 'r2' does not exist"]


def test_segment_beyond_audio_found_from_the_header(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "reco2dur").unlink()
    (out / "segments").write_text("u1 r1 0 1.5\nu2 r1 1.5 -1\nu3 r2 0.25 2.04\n")
    (out / "utt2dur").write_text("u1 1.5\nu2 0.5\nu3 1.79\n")
    load_data_dir(out, check_audio=True)  # 2.04 s is within the 0.05 s tolerance
    (out / "segments").write_text("u1 r1 0 1.5\nu2 r1 1.5 -1\nu3 r2 0.25 2.1\n")
    (out / "utt2dur").write_text("u1 1.5\nu2 0.5\nu3 1.85\n")
    load_data_dir(out)  # without reco2dur and audio check the length is unknown
    assert problems_of(out, check_audio=True) == [
        f"{out}/segments:3: segment 'u3' ends at 2.1 s, beyond the end of recording 'r2' "
        "(2.000 s)"]


def test_unreadable_audio_is_reported_on_its_wav_scp_line(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "reco2dur").unlink()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF but not really audio")
    (out / "wav.scp").write_text(f"r1 {wav}\nr2 {bad}\n")
    found = problems_of(out, check_audio=True)
    assert len(found) == 1 and found[0].startswith(f"{out}/wav.scp:2: {bad}: cannot read")
    with pytest.raises(AudioError, match="cannot read the audio header"):
        audio_duration(str(bad))
    assert audio_duration(wav) == 2.0


def test_missing_wav_scp_and_empty_wav_scp(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "wav.scp").unlink()
    assert f"{out}/wav.scp: missing (every data dir needs a wav.scp)" in problems_of(out)
    d = tmp_path / "empty"
    d.mkdir()
    (d / "wav.scp").write_text("")
    assert problems_of(d) == [f"{d}/wav.scp: has no valid entries"]
    with pytest.raises(DataDirError, match="not a directory"):
        load_data_dir(tmp_path / "nowhere")


def test_problems_are_collected_up_to_a_limit(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "utt2domain").write_text("u1 a\nu2 b\nu3 c\n")
    (out / "utt2weight").write_text("u1 x\nu2 y\nu3 z\n")
    with pytest.raises(DataDirError) as info:
        load_data_dir(out, max_problems=4)
    assert str(info.value).startswith(f"data dir {out}: 6 problem(s):\n")
    assert str(info.value).endswith("\n... and 2 more")
    assert len(info.value.problems) == 4


# ---- pipes ------------------------------------------------------------------------------------

def test_pipes_are_accepted_only_when_enabled(tmp_path, wav):
    data = DataDir({"a": "sox in.flac -t wav - |", "b": wav})
    with pytest.raises(DataDirError, match="pipe command refused"):
        data.write(tmp_path / "d")
    assert not (tmp_path / "d").exists()
    DataDir({"a": "sox in.flac -t wav - |", "b": wav}, allow_pipes=True).write(tmp_path / "d")
    loaded = load_data_dir(tmp_path / "d", allow_pipes=True, check_audio=True)
    assert loaded.source("a") == AudioSource("sox in.flac -t wav - |", 0.0, None, True)
    assert problems_of(tmp_path / "d") == [
        f"{tmp_path}/d/wav.scp:1: Kaldi pipe command refused ('sox in.flac -t wav - |'); enable "
        "pipes with allow_pipes=True / --allow_pipes true only for data dirs you trust"]


# ---- subset and combine -------------------------------------------------------------------------

def test_subset_keeps_only_the_recordings_used(wav):
    sub = base_dir(wav).subset(["u3"])
    assert sub.utt_ids == ["u3"]
    assert sub.wav_scp == {"r2": wav}
    assert sub.table("reco2dur") == {"r2": 2.0}
    assert sub.spk2utt == {"s2": ("u3",)}
    assert sub.table("utt2pitch") == {"u3": ("72",)}
    with pytest.raises(DataDirError, match="1 id\\(s\\) not in the data dir: 'u9'"):
        base_dir(wav).subset(["u1", "u9"])


def test_combine_refuses_colliding_ids_and_names_both_lines(tmp_path, wav):
    write_base(tmp_path, wav)
    other = tmp_path / "other"
    DataDir({"u2": wav, "x": wav}).write(other)
    with pytest.raises(DataDirError) as info:
        combine_data([tmp_path / "data", other], tmp_path / "out")
    assert info.value.problems == [
        f"{other}/wav.scp:1: utterance id 'u2' is also in {tmp_path}/data/segments:2; give id "
        "prefixes (--prefixes / --prefix_ids true) to combine them"]
    assert not (tmp_path / "out").exists()


def test_combine_with_prefixes_fills_segments_speakers_and_domains(tmp_path, wav):
    write_base(tmp_path, wav)
    other = tmp_path / "other"
    DataDir({"u2": wav}, utt2pitch={"u2": "50"}).write(other)
    out = tmp_path / "out"
    combined = combine_data([tmp_path / "data", other], out, prefixes=["a-", "b-"])
    assert combined.utt_ids == ["a-u1", "a-u2", "a-u3", "b-u2"]
    assert combined.segments["b-u2"] == Segment("b-u2", 0.0, None)
    assert combined.segments["a-u3"] == Segment("a-r2", 0.25, 1.0)
    assert combined.utt2spk == {"a-u1": "a-s1", "a-u2": "a-s1", "a-u3": "a-s2", "b-u2": "b-u2"}
    assert combined.domain("b-u2") == "unknown" and combined.domain("a-u2") == "music"
    assert combined.table("utt2pitch") == {"a-u1": ("60", "64", "67"), "a-u3": ("72",),
                                           "b-u2": ("50",)}
    assert combined.table("utt2dur") is None  # not in every input: left out, as Kaldi does
    assert load_data_dir(out) == combined


def test_combine_merges_shared_recordings_and_refuses_conflicting_ones(wav):
    a = DataDir({"r": wav}, segments={"x1": ("r", 0, 1)})
    b = DataDir({"r": wav}, segments={"x2": ("r", 1, 2)})
    assert combine_datadirs([a, b]).wav_scp == {"r": wav}
    c = DataDir({"r": wav + ".other"}, segments={"x3": ("r", 0, 1)})
    with pytest.raises(DataDirError, match="<input 2>/wav.scp: recording id 'r' is also in "
                                           "<input 1>/wav.scp with another path"):
        combine_datadirs([a, c])


def test_auto_prefixes_come_from_folder_names(tmp_path, wav):
    for name in ("speech", "music"):
        DataDir({"u": wav}).write(tmp_path / name)
    rc = combine_cli.main([str(tmp_path / "all"), str(tmp_path / "speech"),
                           str(tmp_path / "music"), "--prefix_ids", "true"])
    assert rc == 0
    assert load_data_dir(tmp_path / "all").utt_ids == ["music-u", "speech-u"]


# ---- atomic writes --------------------------------------------------------------------------------

def test_invalid_content_is_refused_before_anything_is_written(tmp_path, wav):
    out = write_base(tmp_path, wav)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = DataDir({"r1": wav}, utt2spk={"r1": "two words"})
    with pytest.raises(DataDirError, match=f"{out}/utt2spk:1: wrong number of fields"):
        bad.write(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_failure_mid_write_leaves_the_previous_dir_intact(tmp_path, wav):
    """A real I/O failure: the file-size limit makes the OS refuse the big wav.scp mid-write."""
    out = write_base(tmp_path, wav)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    script = (
        "import resource, signal, sys\n"
        "from usad2.data.datadir import DataDir\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        f"d = DataDir({{f'utt{{i:06d}}': {wav!r} for i in range(2000)}})\n"
        "try:\n"
        f"    d.write({str(out)!r})\n"
        "except OSError as e:\n"
        "    print('failed:', e.strerror); sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "File too large" in proc.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_refuses_to_replace_a_folder_that_is_not_a_data_dir(tmp_path, wav):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(DataDirError, match="has no wav.scp; refusing"):
        DataDir({"a": wav}).write(precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_in_code_values_are_checked(wav):
    with pytest.raises(DataDirError, match="id 'a b' is empty or contains whitespace"):
        DataDir({"a b": wav})
    with pytest.raises(DataDirError, match="bad value 'x' for id 'a'"):
        DataDir({"a": wav}, utt2dur={"a": "x"})
    with pytest.raises(DataDirError, match="unknown data-dir file 'feats.scp'"):
        DataDir({"a": wav}, **{"feats.scp": {"a": "x"}})


# ---- validation summary and command lines -------------------------------------------------------

def test_validate_summary(tmp_path, wav):
    out = write_base(tmp_path, wav)
    summary = validate_data_dir(out)
    assert summary["utterances"] == 3 and summary["recordings"] == 2
    assert summary["speakers"] == 2
    assert summary["hours"] == pytest.approx(2.75 / 3600)
    assert summary["domains"] == {"audio": 1, "music": 1, "speech": 1}
    assert summarize(DataDir({"a": wav}))["hours"] is None


def test_validate_cli_prints_summary(tmp_path, wav, capsys):
    out = write_base(tmp_path, wav)
    assert validate_cli.main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{out}: OK: 3 utterances, 2 recordings, 2 speakers, 0.001 hours; "
                              "domains: audio 1, music 1, speech 1;")


def test_validate_cli_exits_1_listing_problems(tmp_path, wav):
    out = write_base(tmp_path, wav)
    (out / "wav.scp").write_text(f"r1 cat {wav} |\nr2 {wav}\n")
    cmd = [sys.executable, "-m", "usad2.bin.validate_data_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{out}/wav.scp:1: Kaldi pipe command refused" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert validate_cli.main([str(out), "--allow_pipes"]) == 0
    assert validate_cli.main([str(out), "--allow_pipes", "true", "--no_audio_check"]) == 0


# ---- fix_data_dir -----------------------------------------------------------------------------

def test_fix_data_dir_drops_inconsistent_entries(tmp_path, wav):
    from usad2.bin import fix_data_dir as fix_cli
    from usad2.data.fix import fix_data_dir

    out = write_base(tmp_path, wav)
    (out / "wav.scp").write_text(f"r1 {wav}\r\nr2 {wav}\nr3 cat x |\n")  # r1: CRLF line
    (out / "segments").write_text(
        "u1 r1 0 1.5\nu3 r2 0.25 1.0\nu2 r2 0 0.5\nu2 r2 0 0.6\nu9 r3 0 1\n")
    (out / "utt2dur").write_text("u1 1.5\nu2 0.5\nu3 0.75\nu9 1\n")
    (out / "utt2domain").write_text("u1 speech\nu3 audio\nu9 music\n")
    (out / "utt2spk").write_text("u1 s1\nu2 s1\nu3 s2\nu9 s3\n")
    (out / "spk2utt").write_text("garbage\n")
    dropped = fix_data_dir(out, out=tmp_path / "fixed")
    fixed = load_data_dir(tmp_path / "fixed")
    assert fixed.utt_ids == ["u3"]  # u1: its recording's line is bad, u2: no domain, u9: pipe
    assert fixed.wav_scp == {"r2": wav}
    assert fixed.segments == {"u3": Segment("r2", 0.25, 1.0)}
    assert fixed.spk2utt == {"s2": ("u3",)}
    assert dropped["bad or duplicate lines in wav.scp"] == 1
    assert dropped["bad or duplicate lines in segments"] == 1  # the duplicate; unsorted lines are only sorted
    assert dropped["pipe recordings (allow_pipes is off)"] == 1
    assert dropped["segments of unusable recordings"] == 2
    assert dropped["utterances not in utt2domain"] == 1
    with pytest.raises(DataDirError):
        load_data_dir(out)  # the original is left alone when --out is given
    assert fix_cli.main([str(out)]) == 0  # in place
    assert load_data_dir(out) == fixed
