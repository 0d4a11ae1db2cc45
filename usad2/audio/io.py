"""Audio loading to usad2's waveform contract: 1-D float32 torch tensor, mono, 16 kHz, in [-1, 1].

Decoding order: soundfile (libsndfile: wav, flac, ogg/vorbis/opus, mp3, aiff, ...) first; only when
soundfile cannot open a file at all, the `sox` binary and then `ffmpeg` convert it to a temporary
float WAV (sox adds formats such as raw GSM/AMR/.vox by extension; ffmpeg adds m4a/aac/webm...).
A file that soundfile opens but fails to decode is reported as corrupt, not retried.
Channels are averaged to mono, a Kaldi segment (`start`/`end` in seconds) is cut at the native
rate, then sox resamples (usad2.audio.resample) and the result is clipped to [-1, 1] (float files
and lossy decoders can overshoot full scale slightly; more than 0.1 % of the samples clipped is
logged as a warning with the fraction).

Every problem raises AudioError naming the utterance (`name`) and the path: missing file, file no
decoder reads, truncated file (a WAV whose data chunk is shorter than its header declares, or a
file that decodes to fewer frames than its header announces), 0 samples, NaN/inf samples, and a
segment outside the file. Truncation cannot be detected for MP3 (a headerless frame stream: a cut
file simply ends early); MP3 lengths also include the encoder delay and padding (up to about two
MPEG frames) because libsndfile does not trim them.

Kaldi pipes (`"cmd args |"`) are run with a shell because a pipe is by definition a shell
command line the user wrote into wav.scp; they are refused unless `allow_pipes=True` is passed,
so data from untrusted sources never executes anything by default.
"""
import logging
import os
import struct
import subprocess
import tempfile

import numpy as np
import soundfile
import torch

from usad2.audio.resample import sox_resample_array
from usad2.errors import AudioError

SAMPLE_RATE = 16000
CLIP_WARN_FRACTION = 0.001  # more samples than this beyond full scale: a WARNING, not DEBUG
MAX_OVERSHOOT = 0.5  # s a segment may end past the file end and be clipped (Kaldi extract-segments)
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming WAV writers leave the data size unknown
_UNKNOWN_SIZE_MIN = 0x7FFF0000  # sox writes a huge placeholder when it cannot seek back

log = logging.getLogger(__name__)


def _where(name, path):
    return f"utterance {name!r} ({path})" if name is not None else str(path)


def _fail(name, path, problem):
    return AudioError(f"{_where(name, path)}: {problem}")


def is_pipe(source):
    """True for a Kaldi wav.scp pipe entry such as `sox in.sph -t wav - |`."""
    return isinstance(source, str) and source.rstrip().endswith("|")


# --------------------------------------------------------------------------------- truncation


def _wav_data_chunk(path):
    """(declared data size, data offset) of a RIFF/WAVE file, or None if not a plain RIFF WAV."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                return size, f.tell()
            f.seek(size + (size & 1), os.SEEK_CUR)


def check_wav_truncation(path, name=None):
    """Raise AudioError if a WAV file holds less sample data than its header declares.

    libsndfile silently shortens such files, so the check reads the RIFF chunks itself.
    Streaming writers (pipes) leave the size unknown: those files are not checked.
    """
    found = _wav_data_chunk(path)
    if found is None:
        return
    size, offset = found
    if size in _UNKNOWN_SIZES or size >= _UNKNOWN_SIZE_MIN:
        return
    have = os.path.getsize(path) - offset
    if have < size:
        raise _fail(name, path, f"truncated WAV file: header declares {size} data bytes, "
                                f"file holds {have}")


def _is_mpeg(info):
    return info.format == "MP3" or str(info.subtype).startswith("MPEG")


# ----------------------------------------------------------------------------------- decoding


def _segment_frames(start, end, sr, total, name, path, max_overshoot):
    """Native-rate frame range [a, b) of a Kaldi segment; end None or < 0 means the file end."""
    start = 0.0 if start is None else float(start)
    a = int(round(start * sr))
    b = total if end is None or float(end) < 0 else int(round(float(end) * sr))
    dur = total / sr
    if total == 0:
        raise _fail(name, path, "empty audio (0 samples)")
    if not np.isfinite(start) or start < 0 or a >= total:
        raise _fail(name, path, f"segment start {start:.3f} s is outside the file ({dur:.3f} s)")
    if b <= a:
        raise _fail(name, path, f"segment end {end} s is not after its start {start:.3f} s")
    if b > total + int(round(max_overshoot * sr)):
        raise _fail(name, path, f"segment end {float(end):.3f} s is beyond the file end ({dur:.3f} s)")
    return a, min(b, total)


class _SoundfileNeedsRate(Exception):
    """soundfile refused a headerless RAW file (chosen by its extension): it needs a sample rate."""


def _open_soundfile(path):
    """soundfile.SoundFile(path); a `.raw` name makes soundfile raise TypeError, turned into ours."""
    try:
        return soundfile.SoundFile(path)
    except TypeError as e:
        raise _SoundfileNeedsRate(str(e)) from None


def _open_info(path):
    try:
        return soundfile.info(path)
    except TypeError as e:
        raise _SoundfileNeedsRate(str(e)) from None


def _read_soundfile(path, start, end, name, max_overshoot):
    """Decode with libsndfile, cutting [start, end); returns ((frames, channels) float32, sr).

    Raises soundfile's error when the format is not recognised (the caller falls back to sox).
    """
    with _open_soundfile(path) as f:
        sr, total = f.samplerate, f.frames
        if _is_mpeg(f):  # frame count is an estimate: decode all, then cut
            data = _decode(f, name, path, -1)
            return _cut(data, sr, start, end, name, path, max_overshoot), sr
        if start is None and end is None:
            a, b = 0, total
        else:
            a, b = _segment_frames(start, end, sr, total, name, path, max_overshoot)
        f.seek(a)
        data = _decode(f, name, path, b - a)
        if len(data) < b - a:
            raise _fail(name, path, f"truncated file: decoded {a + len(data)} of the "
                                    f"{total} frames its header declares")
        return data, sr


def _decode(f, name, path, frames):
    try:
        return f.read(frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise _fail(name, path, f"truncated or corrupt audio data ({e})") from None


def _cut(data, sr, start, end, name, path, max_overshoot):
    if start is None and end is None:
        return data
    a, b = _segment_frames(start, end, sr, len(data), name, path, max_overshoot)
    return data[a:b]


def _convert_to_wav(path, tmp_wav):
    """Try sox, then ffmpeg, to turn `path` into a 32-bit float WAV; returns error texts of failures."""
    tools = [
        ["sox", "-V1", path, "-e", "floating-point", "-b", "32", tmp_wav],
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", path, "-vn", "-c:a", "pcm_f32le", "-f", "wav", tmp_wav],
    ]
    errors = []
    for cmd in tools:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode == 0 and os.path.getsize(tmp_wav) > 0:
            return errors
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        errors.append(f"{cmd[0]}: {err[-1] if err else 'exit code %d' % proc.returncode}")
    return errors


def _read_fallback(path, start, end, name, max_overshoot, sf_error):
    """Decode a file soundfile cannot open by converting it with sox or ffmpeg."""
    with tempfile.TemporaryDirectory(prefix="usad2_audio_") as tmp:
        tmp_wav = os.path.join(tmp, "decoded.wav")
        errors = _convert_to_wav(path, tmp_wav)
        if len(errors) == 2:
            raise _fail(name, path, "not an audio file that soundfile, sox or ffmpeg can decode "
                                    f"(soundfile: {sf_error}; {'; '.join(errors)})")
        try:
            data, sr = soundfile.read(tmp_wav, dtype="float32", always_2d=True)
        except soundfile.LibsndfileError as e:  # e.g. a header claiming an absurd sample rate
            raise _fail(name, path, f"sox/ffmpeg decoded it into unreadable audio ({e})") from None
    return _cut(data, sr, start, end, name, path, max_overshoot), sr


def _read_file(path, start, end, name, max_overshoot):
    if not os.path.exists(path):
        raise _fail(name, path, "audio file does not exist")
    if os.path.isdir(path):
        raise _fail(name, path, "is a directory, not an audio file")
    check_wav_truncation(path, name)
    try:
        return _read_soundfile(path, start, end, name, max_overshoot)
    except (soundfile.LibsndfileError, _SoundfileNeedsRate) as e:
        return _read_fallback(path, start, end, name, max_overshoot, e)


def _run_pipe(command, name):
    """Run a Kaldi pipe command (shell: the user wrote it and enabled pipes); returns its stdout."""
    proc = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-500:]
        raise _fail(name, command, f"pipe command failed with exit code {proc.returncode}: {err}")
    if not proc.stdout:
        raise _fail(name, command, "pipe command produced no output")
    return proc.stdout


def _read_pipe(source, start, end, name, allow_pipes, max_overshoot):
    command = source.rstrip()[:-1].strip()
    if not allow_pipes:
        raise _fail(name, source, "Kaldi pipe entries are disabled; pass allow_pipes=True "
                                  "(--allow_pipes true) to run wav.scp commands")
    data = _run_pipe(command, name)
    with tempfile.TemporaryDirectory(prefix="usad2_pipe_") as tmp:
        path = os.path.join(tmp, "pipe_output")
        with open(path, "wb") as f:
            f.write(data)
        try:
            return _read_file(path, start, end, name, max_overshoot)
        except AudioError as e:  # name the command, not the temporary file
            raise AudioError(str(e).replace(path, f"output of {command!r}")) from None


# ------------------------------------------------------------------------------------ public


def audio_info(path, name=None, *, allow_pipes=False):
    """(sample_rate, num_frames, channels) of an audio file, without decoding where possible.

    For MP3 the frame count is libsndfile's estimate (it may exceed the decoded length by a few
    milliseconds); formats soundfile cannot open, and Kaldi pipes (only with allow_pipes), are
    decoded to count frames.
    """
    if is_pipe(path):
        data, sr = _read_pipe(path, None, None, name, allow_pipes, MAX_OVERSHOOT)
        return int(sr), int(data.shape[0]), int(data.shape[1])
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _fail(name, path, "audio file does not exist")
    check_wav_truncation(path, name)
    try:
        info = _open_info(path)
        return int(info.samplerate), int(info.frames), int(info.channels)
    except (soundfile.LibsndfileError, _SoundfileNeedsRate) as e:
        data, sr = _read_fallback(path, None, None, name, MAX_OVERSHOOT, e)
        return int(sr), int(data.shape[0]), int(data.shape[1])


def check_waveform(wave, name=None, sample_rate=SAMPLE_RATE, expected_rate=SAMPLE_RATE):
    """Check the waveform contract (1-D float32 tensor, non-empty, finite, in [-1, 1], 16 kHz).

    Returns `wave` unchanged so calls can be chained; raises AudioError naming the utterance.
    """
    who = f"utterance {name!r}" if name is not None else "waveform"
    if sample_rate != expected_rate:
        raise AudioError(f"{who}: sample rate {sample_rate} Hz, expected {expected_rate} Hz")
    if not isinstance(wave, torch.Tensor):
        raise AudioError(f"{who}: expected a torch tensor, got {type(wave).__name__}")
    if wave.dim() != 1:
        raise AudioError(f"{who}: expected a 1-D mono waveform, got shape {tuple(wave.shape)}")
    if wave.dtype != torch.float32:
        raise AudioError(f"{who}: expected float32 samples, got {wave.dtype}")
    if wave.numel() == 0:
        raise AudioError(f"{who}: empty audio (0 samples)")
    bad = (~torch.isfinite(wave)).sum().item()
    if bad:
        raise AudioError(f"{who}: {bad} NaN/inf samples")
    peak = wave.abs().max().item()
    if peak > 1.0:
        raise AudioError(f"{who}: samples outside [-1, 1] (peak {peak:.4f})")
    return wave


def _check_decoded(data, name, path):
    if data.size == 0:
        raise _fail(name, path, "empty audio (0 samples)")
    bad = int((~np.isfinite(data)).sum())
    if bad:
        raise _fail(name, path, f"{bad} NaN/inf samples")


def load_audio(source, sample_rate=SAMPLE_RATE, *, name=None, allow_pipes=False,
               start=None, end=None, max_overshoot=MAX_OVERSHOOT):
    """Load `source` (a path, or a Kaldi pipe `"cmd |"` when allow_pipes) as mono float32 at `sample_rate`.

    start/end (seconds, Kaldi `segments`; end None or negative = to the end) cut before
    resampling; an end up to `max_overshoot` seconds past the file end is clipped to it.
    Returns a 1-D torch.float32 tensor in [-1, 1]. Raises AudioError naming `name` and the source.
    """
    if is_pipe(source):
        data, sr = _read_pipe(source, start, end, name, allow_pipes, max_overshoot)
        where = source
    else:
        where = os.fspath(source)
        data, sr = _read_file(where, start, end, name, max_overshoot)
    _check_decoded(data, name, where)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if sr != sample_rate:
        mono = sox_resample_array(mono, sr, sample_rate, name=name)
        if mono.size == 0:
            raise _fail(name, where, f"empty audio after resampling {sr} -> {sample_rate} Hz")
    over = int(np.count_nonzero(np.abs(mono) > 1.0))
    if over:
        # lossy decoders and resampling overshoot full scale by a few samples: DEBUG; more is
        # audio recorded or scaled too loud, which clipping distorts: say how much
        fraction = over / mono.size
        level = logging.WARNING if fraction > CLIP_WARN_FRACTION else logging.DEBUG
        log.log(level, "%s: clipped %d of %d samples (%.2f%%) beyond full scale (peak %.2f); the audio "
                "is distorted, lower its gain", _where(name, where), over, mono.size, 100 * fraction,
                float(np.abs(mono).max()))
    mono = np.clip(mono, -1.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
