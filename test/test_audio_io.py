"""Audio loading (usad2.audio.io) and sox resampling (usad2.audio.resample).

Test audio is generated at test time with sox / ffmpeg / soundfile in temporary directories:
a 1 s stereo file with a 440 Hz tone on the left and 880 Hz on the right (each at amplitude 0.5)
in wav / flac / ogg / mp3 at 8 / 22.05 / 44.1 / 48 kHz.
"""
import math
import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import torch

from usad2.audio.io import MAX_OVERSHOOT, audio_info, check_waveform, load_audio
from usad2.audio.resample import resample
from usad2.errors import AudioError

RATES = [8000, 22050, 44100, 48000]
FORMATS = ["wav", "flac", "ogg", "mp3"]
# libsndfile does not trim MP3 encoder delay/padding: up to ~2 MPEG frames + the decoder delay
# (at 8 kHz a frame is 576 samples = 72 ms).
MP3_SLACK_S = 0.17


def _sox(*args):
    subprocess.run(["sox", "-V1", *map(str, args)], check=True)


def _stereo_tone(path, rate, seconds=1.0):
    _sox("-n", "-r", rate, "-c", 2, path, "synth", seconds, "sine", 440, "sine", 880, "vol", 0.5)
    return path


@pytest.fixture(scope="module")
def stereo_files(tmp_path_factory):
    """{(format, rate): path} of the 1 s left-440 Hz / right-880 Hz test file."""
    root = tmp_path_factory.mktemp("stereo")
    return {(fmt, rate): _stereo_tone(root / f"tone_{rate}.{fmt}", rate)
            for fmt in FORMATS for rate in RATES}


def _tone_amplitude(wave, freq, half_band=20):
    """Frequency of the spectral peak near `freq` and the amplitude of the tone around it."""
    x = wave.double().numpy()
    spec = np.fft.rfft(x)
    hz = np.fft.rfftfreq(len(x), 1 / 16000)
    band = (hz > freq * 0.8) & (hz < freq * 1.2)
    k = np.flatnonzero(band)[np.argmax(np.abs(spec[band]))]
    power = np.sum(np.abs(spec[max(k - half_band, 0):k + half_band + 1]) ** 2)
    return hz[k], 2 * math.sqrt(power) / len(x)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_load_formats_and_rates(stereo_files, fmt, rate):
    wave = load_audio(stereo_files[fmt, rate], name="utt1")
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert wave.abs().max() <= 1.0
    if fmt == "mp3":
        assert 16000 <= len(wave) <= 16000 * (1 + MP3_SLACK_S)
    else:
        assert abs(len(wave) - 16000) <= 2
    # mono = mean of the channels: both tones present, each at half its channel amplitude
    lossy = fmt in ("ogg", "mp3")
    for freq in (440, 880):
        peak, amp = _tone_amplitude(wave, freq)
        assert abs(peak - freq) <= 2.0, (freq, peak)
        assert amp == pytest.approx(0.25, abs=0.04 if lossy else 0.01), (freq, amp)
    # nothing else: the two tones hold nearly all the energy (no aliasing from resampling)
    total = float(torch.sum(wave.double() ** 2)) * 2 / len(wave)
    tones = sum(_tone_amplitude(wave, f)[1] ** 2 for f in (440, 880))
    assert tones / total > (0.9 if lossy else 0.99)


@pytest.mark.parametrize("fmt", FORMATS)
def test_audio_info(stereo_files, fmt):
    sr, frames, channels = audio_info(stereo_files[fmt, 22050])
    assert (sr, channels) == (22050, 2)
    if fmt == "mp3":  # libsndfile's estimate, including encoder delay and padding
        assert 22050 <= frames <= 22050 * (1 + MP3_SLACK_S)
    else:
        assert frames == 22050


def test_mono_is_exact_channel_mean_at_16k(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.9, 0.9, size=(3000, 3)).astype(np.float32)
    path = tmp_path / "three.wav"
    soundfile.write(path, data, 16000, subtype="FLOAT")
    wave = load_audio(path)
    assert torch.allclose(wave, torch.from_numpy(data.mean(axis=1)), atol=1e-7)


def test_output_rate_argument(stereo_files):
    wave = load_audio(stereo_files["flac", 44100], sample_rate=24000)
    assert abs(len(wave) - 24000) <= 2


def test_fallback_decoders(tmp_path):
    """Formats libsndfile cannot open: Psion .prc through sox, AAC .m4a through ffmpeg."""
    prc = tmp_path / "tone.prc"
    _sox("-n", "-r", 8000, "-c", 1, prc, "synth", 0.5, "sine", 1000, "vol", 0.5)
    m4a = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                    "sine=f=1000:d=0.5:sample_rate=44100", "-c:a", "aac", str(m4a)], check=True)
    for path, slack in ((prc, 2), (m4a, 1200)):  # AAC adds priming/padding samples
        wave = load_audio(path, name="fb")
        assert 8000 - 2 <= len(wave) <= 8000 + slack
        assert abs(_tone_amplitude(wave, 1000)[0] - 1000) <= 3
    assert audio_info(prc) == (8000, 4000, 1)


def test_segment_cut_before_resampling(tmp_path):
    ramp = np.linspace(-0.5, 0.5, 16000, dtype=np.float32)
    path = tmp_path / "ramp.wav"
    soundfile.write(path, ramp, 16000, subtype="FLOAT")
    seg = load_audio(path, start=0.25, end=0.5)
    assert torch.equal(seg, torch.from_numpy(ramp[4000:8000]))
    assert torch.equal(load_audio(path, start=0.75, end=-1), torch.from_numpy(ramp[12000:]))
    assert torch.equal(load_audio(path, start=0.75), torch.from_numpy(ramp[12000:]))
    # an end slightly past the file is clipped (Kaldi's max_overshoot)
    assert torch.equal(load_audio(path, start=0.5, end=1.0 + MAX_OVERSHOOT / 2), torch.from_numpy(ramp[8000:]))


@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_segment_of_resampled_file(stereo_files, fmt):
    wave = load_audio(stereo_files[fmt, 44100], start=0.2, end=0.45)
    assert abs(len(wave) - 4000) <= 2
    assert abs(_tone_amplitude(wave, 880)[0] - 880) <= 64  # 0.25 s: 4 Hz resolution, leakage


@pytest.mark.parametrize("start,end,message", [
    (1.2, 1.5, "segment start 1.200 s is outside the file"),
    (0.5, 2.0, "segment end 2.000 s is beyond the file end"),
    (0.5, 0.5, "is not after its start"),
    (-0.1, 0.5, "segment start -0.100 s is outside"),
])
def test_segment_outside_file(stereo_files, start, end, message):
    path = stereo_files["wav", 8000]
    with pytest.raises(AudioError, match=message) as err:
        load_audio(path, name="seg_utt", start=start, end=end)
    assert "seg_utt" in str(err.value) and str(path) in str(err.value)


def _expect_error(path, message, **kwargs):
    with pytest.raises(AudioError, match=message) as err:
        load_audio(path, name="bad_utt", **kwargs)
    assert "utterance 'bad_utt'" in str(err.value)
    assert str(path) in str(err.value)
    return str(err.value)


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.wav", "does not exist")
    with pytest.raises(AudioError, match="does not exist"):
        audio_info(tmp_path / "nope.wav")


def test_unreadable_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n")
    msg = _expect_error(path, "not an audio file that soundfile, sox or ffmpeg can decode")
    assert "soundfile:" in msg and "sox:" in msg and "ffmpeg:" in msg


def _truncate(src, dst, fraction=0.5):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_truncated_wav(stereo_files, tmp_path):
    path = _truncate(stereo_files["wav", 22050], tmp_path / "cut.wav")
    _expect_error(path, "truncated WAV file: header declares 176400 data bytes")
    with pytest.raises(AudioError, match="truncated"):
        audio_info(path)


def test_truncated_flac(stereo_files, tmp_path):
    path = _truncate(stereo_files["flac", 44100], tmp_path / "cut.flac")
    _expect_error(path, "truncated")


def test_empty_audio(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros((0, 1), dtype=np.float32), 16000)
    _expect_error(path, "empty audio \\(0 samples\\)")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
    data = np.zeros(1600, dtype=np.float32)
    data[[10, 20]] = bad
    path = tmp_path / "nan.wav"
    soundfile.write(path, data, 16000, subtype="FLOAT")
    _expect_error(path, "2 NaN/inf samples")


def test_pipes(stereo_files):
    path = stereo_files["wav", 22050]
    pipe = f"sox {path} -t wav - |"
    with pytest.raises(AudioError, match="utterance 'p1'.*pipe entries are disabled"):
        load_audio(pipe, name="p1")
    assert torch.equal(load_audio(pipe, name="p1", allow_pipes=True), load_audio(path))
    assert audio_info(pipe, allow_pipes=True) == (22050, 22050, 2)
    with pytest.raises(AudioError, match="pipe entries are disabled"):
        audio_info(pipe)
    seg = load_audio(pipe, allow_pipes=True, start=0.5)
    assert abs(len(seg) - 8000) <= 2
    with pytest.raises(AudioError, match="utterance 'p2'.*exit code 3"):
        load_audio("echo oops >&2; exit 3 |", name="p2", allow_pipes=True)
    with pytest.raises(AudioError, match="output of 'echo hello'.*not an audio file"):
        load_audio("echo hello |", name="p3", allow_pipes=True)


def test_check_waveform():
    good = torch.zeros(100)
    assert check_waveform(good, "u") is good
    cases = [
        (torch.zeros(0), "empty audio"),
        (torch.tensor([0.0, float("nan")]), "1 NaN/inf samples"),
        (torch.tensor([0.0, 1.5]), "outside \\[-1, 1\\]"),
        (torch.zeros(2, 100), "1-D mono"),
        (torch.zeros(100, dtype=torch.float64), "float32"),
        (np.zeros(100, dtype=np.float32), "torch tensor"),
    ]
    for wave, message in cases:
        with pytest.raises(AudioError, match=f"utterance 'u7': .*{message}"):
            check_waveform(wave, "u7")
    with pytest.raises(AudioError, match="sample rate 8000 Hz, expected 16000"):
        check_waveform(good, "u7", sample_rate=8000)


@pytest.mark.parametrize("rate", RATES)
def test_resample_length_and_tone(rate):
    n = 12345
    x = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / rate)).astype(np.float32)
    y = resample(torch.from_numpy(x), rate, 16000)
    assert y.dtype == torch.float32 and len(y) == round(n * 16000 / rate)
    peak, amp = _tone_amplitude(y, 1000)
    assert abs(peak - 1000) <= 2 and amp == pytest.approx(0.5, abs=0.02)


def test_resample_identity_and_errors():
    x = torch.rand(100) - 0.5
    assert torch.equal(resample(x, 16000, 16000), x)
    with pytest.raises(AudioError, match="utterance 'r1': resampling needs a 1-D"):
        resample(torch.zeros(2, 10), 8000, 16000, name="r1")
    with pytest.raises(AudioError, match="invalid sample rates"):
        resample(x, 0, 16000)


def test_tools_present():
    """The decoders the fallback chain relies on are installed (tools/apt-packages.txt)."""
    assert shutil.which("sox") and shutil.which("ffmpeg")


def test_overshooting_float_file_is_clipped(tmp_path):
    data = np.array([0.0, 1.5, -2.0, 0.25] * 100, dtype=np.float32)
    path = tmp_path / "loud.wav"
    soundfile.write(path, data, 16000, subtype="FLOAT")
    wave = load_audio(path)
    assert wave[:4].tolist() == [0.0, 1.0, -1.0, 0.25]
    check_waveform(wave, "loud")
