"""Stage 2 (format_data) and stage 3 (mix_data) on small generated data dirs."""
import math
import os

import numpy as np
import pytest
import soundfile

from usad2.bin import format_data as format_cli
from usad2.bin import mix_data as mix_cli
from usad2.data.datadir import DataDir, load_data_dir
from usad2.data.format import (FormatConfig, audio_relpath, format_data, loudest_frame_dbfs,
                               split_points)
from usad2.data.mix import balance_weights, mix_data
from usad2.errors import AudioError, ConfigError, DataDirError
from usad2.utils import stamp


def _tone(seconds, sr, amp=0.5, freq=440.0, channels=1):
    t = np.arange(int(round(seconds * sr))) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def _write(path, wave, sr, subtype=None):
    soundfile.write(str(path), wave, sr, subtype=subtype)
    return str(path)


@pytest.fixture
def raw_dir(tmp_path):
    """A data dir with one clip for each rule: kept, cut, too short, too long, silent."""
    audio = tmp_path / "src"
    audio.mkdir()
    wav = {
        "spk1-a": _write(audio / "a.wav", _tone(2.0, 8000, channels=2), 8000),  # stereo 8 kHz
        "song": _write(audio / "song.flac", _tone(25.0, 22050, freq=220), 22050),
        "beep": _write(audio / "beep.wav", _tone(0.2, 16000), 16000),
        "spk1-long": _write(audio / "long.wav", _tone(40.0, 8000), 8000),
        "quiet": _write(audio / "quiet.wav", _tone(1.0, 16000, amp=1e-4), 16000,
                        "FLOAT"),
    }
    data = DataDir(wav, utt2domain={"spk1-a": "speech", "song": "music", "beep": "audio",
                                    "spk1-long": "speech", "quiet": "audio"},
                   utt2spk={"spk1-a": "spk1", "song": "song", "beep": "beep",
                            "spk1-long": "spk1", "quiet": "quiet"},
                   utt2instrument={"song": "piano keys"})
    data.write(tmp_path / "data")
    return tmp_path / "data"


def test_format_converts_segments_and_drops(raw_dir, tmp_path):
    out = tmp_path / "dump"
    summary = format_data(raw_dir, out)
    data = load_data_dir(out, check_audio=True)
    assert data.utt_ids == ["song-0000000", "song-0010000", "song-0020000", "spk1-a"]
    assert data.table("utt2num_samples") == {"song-0000000": 160000, "song-0010000": 160000,
                                             "song-0020000": 80000, "spk1-a": 32000}
    assert data.table("utt2dur")["song-0020000"] == 5.0
    assert data.domain("song-0010000") == "music"
    assert data.table("utt2instrument")["song-0020000"] == ("piano", "keys")
    assert data.utt2spk["spk1-a"] == "spk1"
    for utt in data.utt_ids:
        path = data.source(utt).path
        assert path == os.path.join(str(out), audio_relpath(utt))
        info = soundfile.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    wave, _ = soundfile.read(data.source("spk1-a").path)
    assert abs(np.sqrt(np.mean(wave ** 2)) - 0.5 / math.sqrt(2)) < 0.01  # level kept
    dropped = dict(line.split(" ", 1) for line in (out / "dropped").read_text().splitlines())
    assert sorted(dropped) == ["beep", "quiet", "spk1-long"]
    assert dropped["beep"].startswith("too_short (0.200 s")
    assert dropped["spk1-long"].startswith("too_long (40.000 s")
    assert dropped["quiet"].startswith("silent (loudest 50 ms frame -83.0 dBFS")
    assert summary["dropped"] == {"silent": 1, "too_long": 1, "too_short": 1}
    assert summary["output_utterances"] == 4 and summary["input_utterances"] == 5


def test_format_stamp_skip_force_and_option_change(raw_dir, tmp_path):
    out = tmp_path / "dump"
    assert format_data(raw_dir, out)["skipped"] is False
    assert format_data(raw_dir, out)["skipped"] is True
    assert format_data(raw_dir, out, force=True)["skipped"] is False
    (raw_dir / "utt2lang").write_text("spk1-a en\n")  # changed input: redone, label carried
    assert format_data(raw_dir, out)["skipped"] is False
    assert load_data_dir(out).table("utt2lang") == {"spk1-a": ("en",)}
    changed = FormatConfig(segment_seconds=0, max_seconds=60, sample_format="float")
    summary = format_data(raw_dir, out, changed)
    assert summary["skipped"] is False
    data = load_data_dir(out)
    assert "song" in data.utt_ids and "spk1-long" in data.utt_ids  # nothing cut, 40 s kept
    assert soundfile.info(data.source("song").path).subtype == "FLOAT"
    assert not any(n.startswith(".") and n != ".done" for n in os.listdir(tmp_path / "dump"))


def test_format_text_kept_without_cuts_dropped_with_cuts(tmp_path):
    wav = {"u1": _write(tmp_path / "u1.wav", _tone(12.0, 16000), 16000)}
    DataDir(wav, utt2domain={"u1": "speech"}, text={"u1": "hello world"}).write(tmp_path / "s")
    format_data(tmp_path / "s", tmp_path / "o1")
    assert load_data_dir(tmp_path / "o1").table("text") == {"u1": "hello world"}
    format_data(tmp_path / "s", tmp_path / "o2", FormatConfig(segment_domains=("speech",)))
    cut = load_data_dir(tmp_path / "o2")
    assert cut.utt_ids == ["u1-0000000", "u1-0010000"] and cut.table("text") is None


def test_format_kaldi_segments_input(tmp_path):
    wav = {"rec": _write(tmp_path / "rec.wav", _tone(3.0, 16000), 16000)}
    DataDir(wav, segments={"rec-x": ("rec", 0.5, 1.5), "rec-y": ("rec", 1.5, None)}).write(
        tmp_path / "s")
    format_data(tmp_path / "s", tmp_path / "o")
    data = load_data_dir(tmp_path / "o")
    assert data.table("utt2num_samples") == {"rec-x": 16000, "rec-y": 24000}
    assert data.segments is None and data.domain("rec-x") == "unknown"


def test_format_unreadable_audio_errors_or_drops(tmp_path):
    good = _write(tmp_path / "g.wav", _tone(1.0, 16000), 16000)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"not audio at all")
    DataDir({"good": good, "bad": str(bad)}).write(tmp_path / "s")
    with pytest.raises(AudioError, match="'bad'"):
        format_data(tmp_path / "s", tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing half-written
    format_data(tmp_path / "s", tmp_path / "o", FormatConfig(drop_unreadable=True))
    assert load_data_dir(tmp_path / "o").utt_ids == ["good"]
    assert (tmp_path / "o" / "dropped").read_text().startswith("bad unreadable (")


def test_format_everything_dropped_and_bad_options(tmp_path):
    DataDir({"u": _write(tmp_path / "u.wav", _tone(0.1, 16000), 16000)}).write(tmp_path / "s")
    with pytest.raises(DataDirError, match="all 1 utterances were dropped"):
        format_data(tmp_path / "s", tmp_path / "o")
    with pytest.raises(ConfigError, match="min_seconds < max_seconds"):
        format_data(tmp_path / "s", tmp_path / "o", FormatConfig(min_seconds=5, max_seconds=2))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(DataDirError, match="refusing to replace"):
        format_data(tmp_path / "s", tmp_path / "foreign", FormatConfig(min_seconds=0))


def test_format_parallel_matches_serial(raw_dir, tmp_path):
    format_data(raw_dir, tmp_path / "o1")
    format_data(raw_dir, tmp_path / "o2", nj=2)
    one, two = load_data_dir(tmp_path / "o1"), load_data_dir(tmp_path / "o2")
    assert one.table("utt2num_samples") == two.table("utt2num_samples")
    for utt in one.utt_ids:
        a, _ = soundfile.read(one.source(utt).path)
        b, _ = soundfile.read(two.source(utt).path)
        assert np.array_equal(a, b)


def test_format_cli(raw_dir, tmp_path):
    out = tmp_path / "cli"
    format_cli.main(["--in", str(raw_dir), "--out", str(out), "--min_seconds", "0.1",
                     "--silence_dbfs=-inf", "--segment_domains", "", "--max_seconds", "60"])
    assert load_data_dir(out).utt_ids == ["beep", "quiet", "song", "spk1-a", "spk1-long"]
    assert (out / "dropped").read_text() == ""


def test_loudest_frame_and_split_points():
    square = np.where(np.arange(1600) % 16 < 8, 1.0, -1.0)
    assert loudest_frame_dbfs(square) == pytest.approx(0.0)
    assert loudest_frame_dbfs(np.full(1600, 0.3)) < -300  # DC offset only: silent
    assert loudest_frame_dbfs(0.3 + square * 0.01) == pytest.approx(-40.0)
    assert loudest_frame_dbfs(_tone(1.0, 16000, amp=1.0, freq=1000)) == pytest.approx(
        -3.0103, abs=0.01)
    quiet_then_loud = np.concatenate([np.zeros(16000), _tone(0.05, 16000, amp=0.1)])
    assert loudest_frame_dbfs(quiet_then_loud) == pytest.approx(-23.01, abs=0.05)
    assert loudest_frame_dbfs(np.zeros(100)) == -math.inf
    assert split_points(25, 10) == [0, 10, 20]
    assert split_points(10, 10) == [0] and split_points(50, 0) == [0]


# ---------------------------------------------------------------------------------- stage 3

def _set(path, durs, domain, **tables):
    ids = sorted(durs)
    DataDir({u: f"/nowhere/{u}.wav" for u in ids}, utt2dur=durs,
            utt2domain={u: domain for u in ids}, **tables).write(path)
    return str(path)


def test_balance_formula_numbers():
    durs = {"s1": 10.0, "s2": 20.0, "a1": 5.0, "a2": 1.0, "m1": 3.0}
    doms = {"s1": "speech", "s2": "speech", "a1": "audio", "a2": "audio", "m1": "music"}
    w = balance_weights(durs, doms)
    assert w == pytest.approx({"s1": 1.0, "s2": 1.0, "a1": 5.0, "a2": 5.0, "m1": 10.0})
    for d in ("speech", "audio", "music"):
        assert sum(w[u] * durs[u] for u in durs if doms[u] == d) == pytest.approx(30.0)
    based = balance_weights(durs, doms, base={"a1": 2.0})  # audio mass 11: a1 x2 vs a2
    assert based["a1"] == pytest.approx(2 * 30 / 11) and based["a2"] == pytest.approx(30 / 11)
    assert balance_weights(durs, doms, balance="none") == {u: 1.0 for u in durs}
    with pytest.raises(ConfigError, match="balance 'size'"):
        balance_weights(durs, doms, balance="size")


def test_mix_writes_weights_dev_and_stamps(tmp_path):
    sp = _set(tmp_path / "speech", {"s1": 10.0, "s2": 20.0}, "speech")
    au = _set(tmp_path / "audio", {"a1": 5.0, "a2": 1.0}, "audio")
    mu = _set(tmp_path / "music", {"m1": 3.0}, "music")
    dev = _set(tmp_path / "dev", {"d1": 2.0, "d2": 4.0}, "music")
    result = mix_data([sp, au, mu], tmp_path / "mix", [dev], tmp_path / "dev_mix")
    mixed = load_data_dir(tmp_path / "mix")
    assert mixed.table("utt2weight") == pytest.approx(
        {"s1": 1.0, "s2": 1.0, "a1": 5.0, "a2": 5.0, "m1": 10.0})
    assert mixed.source("m1").path == "/nowhere/m1.wav"
    domains = result["train"]["domains"]
    assert {d: e["weighted_seconds"] for d, e in domains.items()} == {
        "audio": 30.0, "music": 30.0, "speech": 30.0}
    assert load_data_dir(tmp_path / "dev_mix").table("utt2weight") == {"d1": 1.0, "d2": 1.0}
    assert mix_data([sp, au, mu], tmp_path / "mix")["train"]["skipped"] is True
    assert os.path.isfile(stamp.stamp_path(tmp_path / "mix"))
    _set(tmp_path / "music", {"m1": 6.0}, "music")  # changed input: redone
    again = mix_data([sp, au, mu], tmp_path / "mix")["train"]
    assert again["skipped"] is False
    assert load_data_dir(tmp_path / "mix").table("utt2weight")["m1"] == pytest.approx(5.0)


def test_mix_collisions_prefixes_and_missing_durations(tmp_path):
    a = _set(tmp_path / "a", {"u1": 1.0}, "speech")
    b = _set(tmp_path / "b", {"u1": 2.0}, "audio")
    with pytest.raises(DataDirError, match="utterance id 'u1' is also in"):
        mix_data([a, b], tmp_path / "mix")
    mix_data([a, b], tmp_path / "mix", prefix_ids=True)
    assert load_data_dir(tmp_path / "mix").table("utt2weight") == {"a-u1": 2.0, "b-u1": 1.0}
    DataDir({"x": "/nowhere/x.wav"}).write(tmp_path / "nodur")
    with pytest.raises(DataDirError, match="nodur/utt2dur: missing"):
        mix_data([str(tmp_path / "nodur")], tmp_path / "mix2")
    with pytest.raises(ConfigError, match="--dev and --dev_out"):
        mix_data([a], tmp_path / "mix3", dev_dirs=[b])


def test_mix_cli(tmp_path):
    a = _set(tmp_path / "a", {"u1": 1.0, "u2": 3.0}, "speech")
    b = _set(tmp_path / "b", {"v1": 2.0}, "audio")
    mix_cli.main(["--train", f"{a},{b}", "--out", str(tmp_path / "mix"), "--balance", "none"])
    assert load_data_dir(tmp_path / "mix").table("utt2weight") == {"u1": 1.0, "u2": 1.0,
                                                                    "v1": 1.0}
