"""Bad input for the audio loader (issue 8 §3): whatever bytes a file holds, `load_audio` either
returns a waveform that meets the contract (1-D float32, non-empty, finite, in [-1, 1]) or raises
AudioError naming the utterance and the file; never another exception type.

Two parts:
- a fixed corpus of typical damage (corrupt, empty, NaN, stereo, 8 kHz, truncated, huge header,
  non-audio), each with the exact expected outcome;
- hypothesis fuzzing: random bytes under audio extensions, real files truncated at random
  points, real files with mutated header bytes, and RIFF/WAVE headers with random fields.
  About 100 examples run by default; the slow tier runs 10k (`pytest -m slow`).
Files that soundfile cannot open go through sox and ffmpeg, so one example can cost two
subprocesses: the default tier is kept small for the 2-core CI machine.
"""
import io
import os
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usad2.audio.io import load_audio
from usad2.errors import AudioError

SR = 16000
NAME = "fuzz_utt"
EXTENSIONS = [".wav", ".flac", ".ogg", ".mp3", ".aiff", ".au", ".m4a", ".opus", ".sph", ".raw"]
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
DEFAULT_EXAMPLES = 25  # per strategy; 4 strategies ~ 100 examples
SLOW_EXAMPLES = 2500   # per strategy; 10k in all


def assert_loads_or_audio_error(path, name=NAME):
    """The property: a contract-abiding waveform, or AudioError naming `name` and `path`."""
    try:
        wave = load_audio(str(path), name=name)
    except AudioError as e:
        assert name in str(e) and str(path) in str(e), f"error does not name the file: {e}"
        return None
    assert isinstance(wave, torch.Tensor) and wave.dtype == torch.float32 and wave.dim() == 1
    assert wave.numel() > 0 and bool(torch.isfinite(wave).all()) and float(wave.abs().max()) <= 1.0
    return wave


def tone(seconds=0.3, sr=SR, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    mono = 0.4 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def encoded(fmt, subtype=None, seconds=0.3):
    """Bytes of a short tone in a soundfile format ('WAV', 'FLAC', 'OGG', 'AIFF', 'AU')."""
    buf = io.BytesIO()
    sf.write(buf, tone(seconds), SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def wav_header(data_size, channels=1, rate=SR, bits=16, fmt_tag=1):
    """A canonical 44-byte RIFF/WAVE header with the given (possibly absurd) fields."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    return (b"RIFF" + struct.pack("<I", (36 + data_size) & 0xFFFFFFFF) + b"WAVE" + b"fmt "
            + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_size & 0xFFFFFFFF))


@pytest.fixture(scope="module")
def real_files():
    """{extension: bytes} of valid short files the fuzzers damage."""
    return {".wav": encoded("WAV", "PCM_16"), ".flac": encoded("FLAC"), ".ogg": encoded("OGG", "VORBIS"),
            ".aiff": encoded("AIFF"), ".au": encoded("AU"), ".wav32": encoded("WAV", "FLOAT")}


# ------------------------------------------------------------------------------ fixed corpus


def write(path, data):
    path.write_bytes(data)
    return path


def test_corpus_empty_file(tmp_path):
    path = write(tmp_path / "empty.wav", b"")
    with pytest.raises(AudioError, match=f"{NAME}.*empty.wav"):
        load_audio(str(path), name=NAME)


def test_corpus_header_only_wav_has_zero_samples(tmp_path):
    path = write(tmp_path / "hdr.wav", wav_header(0))
    with pytest.raises(AudioError, match="0 samples|not an audio file"):
        load_audio(str(path), name=NAME)


def test_corpus_nan_float_wav(tmp_path):
    data = tone().copy()
    data[100:110] = np.nan
    sf.write(tmp_path / "nan.wav", data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=f"{NAME}.*10 NaN/inf samples"):
        load_audio(str(tmp_path / "nan.wav"), name=NAME)


def test_corpus_inf_float_wav(tmp_path):
    data = tone().copy()
    data[5] = np.inf
    sf.write(tmp_path / "inf.wav", data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="1 NaN/inf samples"):
        load_audio(str(tmp_path / "inf.wav"), name=NAME)


def test_corpus_stereo_is_averaged_to_mono(tmp_path):
    left = tone()
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    sf.write(tmp_path / "stereo.wav", stereo, SR, subtype="FLOAT")
    wave = assert_loads_or_audio_error(tmp_path / "stereo.wav")
    np.testing.assert_allclose(wave.numpy(), left / 2, atol=1e-6)


def test_corpus_8khz_is_resampled_to_16khz(tmp_path):
    sf.write(tmp_path / "nb.wav", tone(0.5, sr=8000), 8000)
    wave = assert_loads_or_audio_error(tmp_path / "nb.wav")
    assert wave.shape == (16000 * 0.5,)
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * SR / len(wave) - 440) < 5  # still a 440 Hz tone


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".aiff"])
def test_corpus_truncated_file(tmp_path, real_files, ext):
    data = real_files[ext]
    path = write(tmp_path / f"cut{ext}", data[: len(data) * 6 // 10])
    try:
        wave = load_audio(str(path), name=NAME)
    except AudioError as e:
        assert NAME in str(e) and "truncated" in str(e)
    else:  # Ogg has no declared length; libsndfile sizes AIFF by the file: a shorter waveform
        assert ext in (".ogg", ".aiff") and 0 < wave.numel() < SR * 0.3


def test_corpus_truncated_wav_says_how_much(tmp_path, real_files):
    data = real_files[".wav"]
    path = write(tmp_path / "cut.wav", data[:1044])
    with pytest.raises(AudioError, match=r"header declares 9600 data bytes, file holds 1000"):
        load_audio(str(path), name=NAME)


def test_corpus_huge_header_claims_giant_data_chunk(tmp_path):
    body = (tone() * 32767).astype("<i2").tobytes()
    path = write(tmp_path / "huge.wav", wav_header(0x40000000) + body)  # claims 1 GiB
    with pytest.raises(AudioError, match=f"{NAME}.*truncated WAV file: header declares 1073741824"):
        load_audio(str(path), name=NAME)


def test_corpus_streaming_placeholder_size_reads_what_is_there(tmp_path):
    """sox/ffmpeg writing to a pipe leave 0xFFFFFFFF: the samples present are the audio."""
    body = (tone() * 32767).astype("<i2").tobytes()
    path = write(tmp_path / "stream.wav", wav_header(0xFFFFFFFF) + body)
    wave = assert_loads_or_audio_error(path)
    assert wave is not None and wave.shape == (len(body) // 2,)


@pytest.mark.parametrize("name,data", [
    ("text.wav", b"this is not audio at all\n" * 20),
    ("image.flac", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
    ("zeros.mp3", bytes(4096)),
    ("riff_not_wave.wav", b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(64)),
    ("corrupt_fmt.wav", b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\xff" * 16 + b"data\x00\x00\x00\x00"),
])
def test_corpus_non_audio_and_corrupt(tmp_path, name, data):
    path = write(tmp_path / name, data)
    with pytest.raises(AudioError) as err:
        load_audio(str(path), name=NAME)
    assert NAME in str(err.value) and str(path) in str(err.value)


def test_corpus_missing_file_and_directory(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(str(tmp_path / "nope.wav"), name=NAME)
    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(str(tmp_path / "dir.wav"), name=NAME)


# ---------------------------------------------------------------------------------- fuzzing


def _random_bytes(tmp_path, data, ext):
    assert_loads_or_audio_error(write(tmp_path / f"random{ext}", data))


def _truncated(tmp_path, real_files, ext, fraction):
    data = real_files[ext]
    suffix = ".wav" if ext == ".wav32" else ext
    assert_loads_or_audio_error(write(tmp_path / f"trunc{suffix}", data[: int(len(data) * fraction)]))


def _mutated(tmp_path, real_files, ext, edits):
    data = bytearray(real_files[ext])
    for pos, value in edits:
        data[pos % min(len(data), 96)] = value  # the header region
    suffix = ".wav" if ext == ".wav32" else ext
    assert_loads_or_audio_error(write(tmp_path / f"mut{suffix}", bytes(data)))


def _random_wav_fields(tmp_path, channels, rate, bits, fmt_tag, size, body):
    header = wav_header(size, channels, rate, bits, fmt_tag)
    assert_loads_or_audio_error(write(tmp_path / "fields.wav", header + body))


random_bytes_args = dict(data=st.binary(min_size=0, max_size=2048), ext=st.sampled_from(EXTENSIONS))
truncated_args = dict(ext=st.sampled_from([".wav", ".flac", ".ogg", ".aiff", ".au", ".wav32"]),
                      fraction=st.floats(0.0, 1.0))
mutated_args = dict(ext=st.sampled_from([".wav", ".flac", ".ogg", ".aiff", ".au", ".wav32"]),
                    edits=st.lists(st.tuples(st.integers(0, 95), st.integers(0, 255)), min_size=1, max_size=6))
fields_args = dict(channels=st.sampled_from([0, 1, 2, 3, 255, 65535]),
                   rate=st.sampled_from([0, 1, 8000, 16000, 44100, 192000, 0xFFFFFFFF]),
                   bits=st.sampled_from([0, 1, 8, 16, 24, 32, 64, 65535]),
                   fmt_tag=st.sampled_from([0, 1, 3, 6, 7, 0xFFFE, 0x1234]),
                   size=st.integers(0, 0xFFFFFFFF) | st.integers(0, 4096),
                   body=st.binary(min_size=0, max_size=1024))


@settings(max_examples=DEFAULT_EXAMPLES, **SETTINGS)
@given(**random_bytes_args)
def test_fuzz_random_bytes(tmp_path, data, ext):
    _random_bytes(tmp_path, data, ext)


@settings(max_examples=DEFAULT_EXAMPLES, **SETTINGS)
@given(**truncated_args)
def test_fuzz_truncated_real_files(tmp_path, real_files, ext, fraction):
    _truncated(tmp_path, real_files, ext, fraction)


@settings(max_examples=DEFAULT_EXAMPLES, **SETTINGS)
@given(**mutated_args)
def test_fuzz_mutated_headers(tmp_path, real_files, ext, edits):
    _mutated(tmp_path, real_files, ext, edits)


@settings(max_examples=DEFAULT_EXAMPLES, **SETTINGS)
@given(**fields_args)
def test_fuzz_random_wav_header_fields(tmp_path, channels, rate, bits, fmt_tag, size, body):
    _random_wav_fields(tmp_path, channels, rate, bits, fmt_tag, size, body)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)
@given(**random_bytes_args)
def test_fuzz_random_bytes_10k(tmp_path, data, ext):
    _random_bytes(tmp_path, data, ext)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)
@given(**truncated_args)
def test_fuzz_truncated_real_files_10k(tmp_path, real_files, ext, fraction):
    _truncated(tmp_path, real_files, ext, fraction)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)
@given(**mutated_args)
def test_fuzz_mutated_headers_10k(tmp_path, real_files, ext, edits):
    _mutated(tmp_path, real_files, ext, edits)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SETTINGS)
@given(**fields_args)
def test_fuzz_random_wav_header_fields_10k(tmp_path, channels, rate, bits, fmt_tag, size, body):
    _random_wav_fields(tmp_path, channels, rate, bits, fmt_tag, size, body)


def test_property_checker_rejects_a_foreign_exception(tmp_path, monkeypatch):
    """The property is not vacuous: an exception other than AudioError fails it."""
    import usad2.audio.io as audio_io

    def broken(*args, **kwargs):
        raise ValueError("deep library error")

    monkeypatch.setattr(audio_io, "_read_file", broken)
    with pytest.raises(ValueError):
        assert_loads_or_audio_error(write(tmp_path / "x.wav", b"RIFF"))
    assert os.path.exists(tmp_path / "x.wav")
