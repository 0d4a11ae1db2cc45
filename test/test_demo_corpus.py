"""Demo corpus: MIDI writer, per-source planning, and the tiny corpus end to end.

The tiny corpus is generated twice (2 workers, then 1 worker into another folder): the first
copy is checked (valid data dirs, labels per domain, leakage-free splits, levels and
durations), the two copies must be identical, and reruns must skip or resume.
"""
import hashlib
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from usad2.data.datadir import load_data_dir
from usad2.data.demo import corpus, midi, music, sounds, speech_real, speech_synth
from usad2.data.demo.common import RMS_FLOOR, SPLITS, Job, rms, split_counts
from usad2.data.demo.notes import piano_roll, read_notes_table
from usad2.data.validate import validate_data_dir
from usad2.studies import soundfont_grid
from usad2.errors import ConfigError, DataDirError
from usad2.utils import stamp

needs_tools = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("espeak-ng", "flite", "fluidsynth", "mma"))
    or not os.path.isdir("/usr/share/hydrogen/data/drumkits"),
    reason="demo corpus apt packages not installed (tools/apt-packages.txt)")
TIMGM = "/usr/share/sounds/sf2/TimGM6mb.sf2"
EXTRA_FONTS = ("gmbank", "opl3")
needs_extra_fonts = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not all(os.path.exists(music.FONTS[f][0]) for f in EXTRA_FONTS),
    reason="the extra training SoundFonts are not installed (tools/apt-packages.txt)")


# ------------------------------------------------------------------------------------- MIDI


def test_midi_bytes_header_and_varlen():
    data = midi.notes_midi([midi.Note(69, 0.5, 1.5)], program=0)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert int.from_bytes(data[12:14], "big") == midi.TICKS_PER_SECOND
    assert midi._varlen(0) == b"\x00" and midi._varlen(127) == b"\x7f"
    assert midi._varlen(128) == b"\x81\x00" and midi._varlen(0x3FFF) == b"\xff\x7f"
    with pytest.raises(ValueError):
        midi.note_events(midi.Note(128, 0, 1))
    with pytest.raises(ValueError):
        midi.note_events(midi.Note(60, 1.0, 1.0))


def test_midi_roundtrip_keeps_notes(tmp_path):
    notes = [midi.Note(60, 0.0, 0.5, 90), midi.Note(64, 0.25, 1.125, 70, channel=1),
             midi.Note(60, 0.5, 0.75, 100), midi.Note(36, 0.1, 0.2, 100, channel=9)]
    path = tmp_path / "x.mid"
    path.write_bytes(midi.notes_midi(notes, program=5, end_time=2.0))
    got = midi.read_notes(path)
    assert got == sorted(notes[:3], key=lambda n: (n.start, n.pitch, n.end))  # drums skipped


def test_read_notes_rejects_garbage(tmp_path):
    path = tmp_path / "bad.mid"
    path.write_bytes(b"RIFF....")
    with pytest.raises(Exception, match="not a readable Standard MIDI File"):
        midi.read_notes(path)


@needs_tools
def test_midi_writer_renders_a4_at_440_hz(tmp_path):
    path = tmp_path / "a4.mid"
    path.write_bytes(midi.notes_midi([midi.Note(69, 0.5, 1.5, 110)], program=0, end_time=2.0))
    wave = music.fluidsynth(str(path), TIMGM, str(tmp_path / "a4.wav"), effects=False)
    sr = 16000
    assert rms(wave[:int(0.45 * sr)]) < 1e-4  # silent before the note-on at 0.5 s
    body = wave[int(0.6 * sr):int(1.4 * sr)]
    assert rms(body) > 1e-3
    spectrum = np.abs(np.fft.rfft(body * np.hanning(body.size), n=16 * body.size))
    peak = np.argmax(spectrum) * sr / (16 * body.size)
    assert abs(peak - 440.0) < 3.0, peak


@needs_tools
def test_test_split_notes_stay_where_timgm6mb_sounds(tmp_path, monkeypatch):
    """Seed 112 draws TimGM6mb's whistle (program 78) at 79, a note that SoundFont renders silent
    (the data prep then failed on it); the ceiling moves it to 78 and leaves every other draw alone."""
    jobs = music.plan_notes(40, 112, 2.0)
    clips = {c.utt: c for j in jobs for c in j.clips}
    clip = clips["timgm6mb_note-test00003"]
    assert (clip.spec["program"], clip.spec["notes"][0][0]) == (78, 78)
    assert (clip.labels["pitch"], clip.labels["pitch_class"]) == ("78", "F#")
    monkeypatch.setattr(music, "FONT_PITCH_CEILING", {})
    uncapped = {c.utt: c for j in music.plan_notes(40, 112, 2.0) for c in j.clips}
    assert uncapped[clip.utt].spec["notes"][0][0] == 79
    changed = [u for u in clips if clips[u] != uncapped[u]]
    assert changed == [clip.utt]
    monkeypatch.undo()
    durations = music.render_batch(Job("one", "usad2.data.demo.music:render_batch", [clip], {"font": "timgm6mb"}),
                                   str(tmp_path))
    wave, _ = soundfile.read(tmp_path / clip.audio)
    assert durations[clip.utt] > 0.3 and rms(wave) > RMS_FLOOR


@needs_tools
def test_soundfont_grid_finds_timgm6mb_silent_notes_and_the_demo_draws_none(monkeypatch, capsys):
    silent = soundfont_grid.silent_notes(TIMGM)
    assert (78, 79) in silent and (78, 78) not in silent
    assert len(silent) < 0.01 * len(soundfont_grid.grid())
    assert [note for note in silent if soundfont_grid.drawable(TIMGM, *note)] == []
    monkeypatch.setattr(music, "FONT_PITCH_CEILING", {})
    assert soundfont_grid.drawable(TIMGM, 78, 79)  # drawable without the ceiling: the old failure
    monkeypatch.undo()
    assert soundfont_grid.main([TIMGM]) == 0
    assert capsys.readouterr().out.startswith(f"TimGM6mb.sf2: {len(silent)} of ")


def _music_clips(jobs):
    return [c for j in jobs for c in j.clips if c.domain == "music"]


def test_train_soundfonts_take_turns_on_the_same_plan():
    """Train music renders with each SoundFont in turn; every label and note stays the one-font plan's."""
    fonts = ("fluidr3",) + EXTRA_FONTS
    def by_slot(clips):  # (split, kind, index) -> clip; the font prefix of the id left out
        return {(c.split, c.spk.split("_")[1], c.utt[-5:]): c for c in clips}

    one = by_slot(_music_clips(corpus.plan("tiny", 0)))
    three_jobs = corpus.plan("tiny", 0, fonts)
    three = by_slot(_music_clips(three_jobs))
    assert one.keys() == three.keys()
    for slot, a in one.items():
        b = three[slot]
        assert a.labels == b.labels
        assert {k: v for k, v in a.spec.items() if k != "font"} == {k: v for k, v in b.spec.items() if k != "font"}
        expected = fonts[int(slot[2]) % 3] if b.split == "train" else a.spec["font"]
        assert b.spec["font"] == expected and b.spk.startswith(f"{expected}_") and b.utt.startswith(b.spk)
    three = list(three.values())
    assert {c.spec["font"] for c in three if c.split == "train"} == set(fonts)
    assert {c.spec["font"] for c in three if c.split == "test"} == {"timgm6mb"}
    for job in three_jobs:
        if job.render.endswith("render_batch"):
            assert {c.spec["font"] for c in job.clips} == {job.spec["font"]}


def test_train_soundfonts_refuse_the_test_font_and_unknown_names(tmp_path):
    for fonts, message in ((("fluidr3", "timgm6mb"), "renders the test split"),
                           (("fluidr3", "nope"), "distinct names"), (("gmbank", "gmbank"), "distinct names"),
                           ((), "distinct names")):
        with pytest.raises(ConfigError, match=message):
            corpus.generate_demo(tmp_path / "data", size="tiny", train_fonts=fonts)
    assert not (tmp_path / "data").exists()


@needs_extra_fonts
@pytest.mark.parametrize("font", EXTRA_FONTS)
def test_extra_soundfonts_render_the_demo_notes_in_their_own_voice(font, tmp_path):
    """The same planned chords render non-silent and audibly different from FluidR3."""
    clips = [c for c in _music_clips(corpus.plan("tiny", 0, ("fluidr3",) + EXTRA_FONTS))
             if c.split == "train" and c.spec["font"] == font and "chord" in c.spk][:3]
    waves = {}
    for name in ("fluidr3", font):
        out = tmp_path / name
        music.render_batch(Job(name, "usad2.data.demo.music:render_batch", clips, {"font": name}), str(out))
        waves[name] = [soundfile.read(out / c.audio)[0] for c in clips]
    for ours, fluid in zip(waves[font], waves["fluidr3"]):
        assert rms(ours) > RMS_FLOOR
        n = min(len(ours), len(fluid))
        spectra = [np.abs(np.fft.rfft(w[:n])) for w in (ours, fluid)]
        assert np.corrcoef(*spectra)[0, 1] < 0.95  # same notes, another instrument sample


# ---------------------------------------------------------------------------------- planning


def test_split_counts():
    assert split_counts(100) == {"train": 80, "dev": 10, "test": 10}
    assert split_counts(3) == {"train": 1, "dev": 1, "test": 1}
    assert split_counts(2) == {"train": 2, "dev": 0, "test": 0}


def test_drum_class_of_names():
    cases = {"Kick (Tama Superstar 22\")": "kick", "BassDrum": "kick", "Snare Rock": "snare",
             "Hi-Hat Open (Paiste)": "hihat", "Closed HH": "hihat", "Crash Jazz": "cymbal",
             "Ride Bell": "cymbal", "Tom Low": "tom", "Hand Clap": "clap", "Cowbell": "cymbal",
             "Djembe1 Slap": "perc", "drum_cymbal_closed": "cymbal", "bd_haus": "kick",
             "sn_dolf": "snare"}
    for name, expected in cases.items():
        assert sounds.drum_class_of(name) == expected, name


def test_espeak_and_flite_plans_hold_voices_out():
    assert not set(speech_synth.ESPEAK_VOICES["train"]) & set(speech_synth.ESPEAK_VOICES["test"])
    for plan in (speech_synth.plan_espeak(300, 1), speech_synth.plan_flite(100, 1)):
        voices = {s: {c.labels["voice"] for j in plan for c in j.clips if c.split == s}
                  for s in SPLITS}
        assert voices["train"] and voices["dev"] and voices["test"]
        assert not voices["train"] & voices["test"] and not voices["train"] & voices["dev"]
        assert not voices["dev"] & voices["test"]
    for lang, words in speech_synth.WORDS.items():
        assert len(words) == len(speech_synth.CONCEPTS), lang


@needs_tools
def test_recorded_speech_plans_hold_speakers_out():
    items = speech_real.ktuberling_items()
    assert items and not any("@" in folder for _, folder, _ in items)
    assert len({path for path, _, _ in items}) == len(items)
    for plan in (speech_real.plan_ktuberling(200, 0), speech_real.plan_klettres(200, 0)):
        spk = {s: {c.spk for j in plan for c in j.clips if c.split == s} for s in SPLITS}
        assert all(spk.values())
        assert not spk["train"] & spk["dev"] and not spk["train"] & spk["test"]
        assert not spk["dev"] & spk["test"]
        for clip in (c for j in plan for c in j.clips):
            assert os.path.isfile(clip.spec["path"]) and clip.labels["voice"] == clip.spk
            assert ("word" in clip.labels) != ("letter" in clip.labels)


def test_plans_are_deterministic_for_a_seed():
    def ids(seed):
        jobs = speech_synth.plan_espeak(50, seed) + music.plan_chords(20, seed, 3.0)
        return [(c.utt, c.labels, c.spec) for j in jobs for c in j.clips]
    assert ids(3) == ids(3)
    assert ids(3) != ids(4)


def test_chord_voicings_have_the_chord_pitch_classes():
    import random
    rng = random.Random(0)
    for quality, intervals in music.CHORDS.items():
        for root in range(12):
            for inversion in range(len(intervals)):
                pitches = music._voicing(root, intervals, inversion, rng)
                assert {p % 12 for p in pitches} == {(root + i) % 12 for i in intervals}
                assert pitches == sorted(pitches) and 40 <= min(pitches) and max(pitches) < 96
                if inversion == 0:
                    assert pitches[0] % 12 == root


def test_mma_text_spells_the_progression_in_key():
    text = music.mma_text({"groove": "Swing", "key": 7, "tempo": 120,
                           "progression": "I vi IV V", "mma_seed": 5})
    assert text.splitlines() == ["RndSeed 5", "Tempo 120", "Groove Swing", "1 G", "2 Em", "3 C", "4 D7"]


@needs_tools
def test_sample_files_are_in_one_split_only():
    items = [it for it in sounds.sample_items() if sounds.source_duration(it[0])]
    splits = sounds.file_splits(items, key=lambda it: it[2])
    assert set(splits.values()) == set(SPLITS)
    assert splits == sounds.file_splits(list(reversed(items)), key=lambda it: it[2])
    assert not any(os.path.basename(it[0]).startswith("audio-channel-") for it in items)


def test_notes_table_and_piano_roll(tmp_path):
    path = tmp_path / "n.tsv"
    from usad2.data.demo.notes import write_notes
    write_notes(path, [midi.Note(69, 0.1, 0.5, 80), midi.Note(72, 0.9, 2.0, 90),
                       midi.Note(40, 1.2, 1.5), midi.Note(50, 0.9996, 1.2)], duration=1.0)
    rows = read_notes_table(path)
    assert rows == [(0.1, 0.5, 69, 80), (0.9, 1.0, 72, 90)]
    roll = piano_roll(rows, num_frames=50, frame_rate=50)
    assert roll[5:25, 69].all() and roll[:5, 69].sum() == 0 and roll[25:, 69].sum() == 0
    assert roll[45:50, 72].all() and roll.sum() == 20 + 5
    path.write_text("onset\toffset\tpitch\tvelocity\n0.5\t0.2\t60\t1\n")
    with pytest.raises(DataDirError, match=r"n.tsv:2: bad note"):
        read_notes_table(path)


def test_bad_size_and_nj_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="--size"):
        corpus.generate_demo(tmp_path, size="huge")
    with pytest.raises(ConfigError, match="--nj"):
        corpus.generate_demo(tmp_path, size="tiny", nj=0)
    with pytest.raises(ConfigError, match="whitespace"):
        corpus.generate_demo(tmp_path / "my data", size="tiny")


# ----------------------------------------------------------------------- tiny corpus, whole


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "data"
    summary = corpus.generate_demo(str(out), size="tiny", seed=0, nj=2)
    return out, summary


def _dirs():
    return [f"{d}_{s}" for d in corpus.DOMAINS for s in SPLITS] + list(SPLITS)


@needs_tools
def test_tiny_data_dirs_validate_with_audio(tiny):
    out, summary = tiny
    total = 0
    for name in _dirs():
        result = validate_data_dir(out / name, check_audio=True)
        assert result["utterances"] == summary[name]["utterances"] > 0
        if name in SPLITS:
            total += result["utterances"]
    assert total == summary["total"]["utterances"] >= 200
    train = load_data_dir(out / "train")
    assert set(train.table("utt2domain").values()) == {"speech", "music", "audio"}


@needs_tools
def test_tiny_every_utterance_has_its_domain_labels(tiny):
    out, _ = tiny
    for split in SPLITS:
        data = load_data_dir(out / split)
        t = {name: data.table(name) or {} for name in data.files}
        for utt in data.utt_ids:
            domain = t["utt2domain"][utt]
            assert utt in t["utt2source"]
            if domain == "speech":
                assert (utt in t["utt2word"]) != (utt in t.get("utt2letter", {}))
                assert utt in t["utt2language"] and utt in t["utt2voice"]
            elif domain == "music":
                assert utt in t["utt2notes"] and os.path.isfile(t["utt2notes"][utt][0])
                assert (utt in t["utt2instrument_family"]) != (utt in t["utt2style"])
            else:
                assert domain == "audio" and utt in t["utt2sound_class"]
        for utt, (pitch,) in t.get("utt2pitch", {}).items():  # single notes: table agrees
            rows = read_notes_table(t["utt2notes"][utt][0])
            assert [r[2] for r in rows] == [int(pitch)]
            assert t["utt2pitch_class"][utt][0] == music.PITCH_CLASSES[int(pitch) % 12]


@needs_tools
def test_tiny_audio_levels_and_durations(tiny):
    out, _ = tiny
    data = load_data_dir(out / "train")
    for utt in data.utt_ids:
        wave, sr = soundfile.read(data.wav_scp[utt], dtype="float32")
        assert sr == 16000 and wave.ndim == 1
        assert abs(wave.size / sr - data.table("utt2dur")[utt]) < 1e-3
        assert rms(wave) > RMS_FLOOR, utt
        assert 0.2 < wave.size / sr <= 3.5, utt


@needs_tools
def test_tiny_splits_share_no_voice_soundfont_or_kit(tiny):
    out, _ = tiny
    tables = {s: load_data_dir(out / s) for s in SPLITS}

    def values(split, name):
        return {v[0] for v in (tables[split].table(name) or {}).values()}

    for label in ("utt2voice", "utt2kit"):
        for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
            assert values(a, label) and not values(a, label) & values(b, label), (label, a, b)
    spk = {s: {v for u, v in tables[s].utt2spk.items() if tables[s].domain(u) == "music"}
           for s in SPLITS}
    assert all(v.startswith("fluidr3_") for v in spk["train"] | spk["dev"])  # default: one font
    assert spk["test"] and all(v.startswith("timgm6mb_") for v in spk["test"])


def _content(out):
    """{utt: sha256 of its audio} over the combined dirs, plus every table with paths made
    relative to the corpus folder."""
    result = {}
    for split in SPLITS:
        data = load_data_dir(out / split)
        for utt, path in data.wav_scp.items():
            result[utt] = hashlib.sha256(open(path, "rb").read()).hexdigest()
        for name in data.files:
            text = (out / split / name).read_text().replace(str(out), "<out>")
            result[f"{split}/{name}"] = hashlib.sha256(text.encode()).hexdigest()
    for notes in sorted((out / "notes").iterdir()):
        result[notes.name] = hashlib.sha256(notes.read_bytes()).hexdigest()
    return result


@needs_tools
def test_tiny_is_deterministic_and_reruns_skip_or_resume(tiny, tmp_path):
    out, summary = tiny
    other = tmp_path / "data"
    assert corpus.generate_demo(str(other), size="tiny", seed=0, nj=1) == summary
    assert _content(out) == _content(other)

    # a finished corpus is skipped: nothing is rewritten
    wav = next((other / "audio" / "speech").iterdir())
    mtime = wav.stat().st_mtime_ns
    assert corpus.generate_demo(str(other), size="tiny", seed=0, nj=1) == summary
    assert wav.stat().st_mtime_ns == mtime

    # an interrupted run (no stamp, one job missing) renders only that job again
    record = other / ".jobs" / "grooves0000.json"
    lost = json.loads(record.read_text())["durations"]
    record.unlink()
    (other / stamp.STAMP_NAME).unlink()
    for utt in lost:
        (other / "audio" / "music" / f"{utt}.wav").unlink()
    corpus.generate_demo(str(other), size="tiny", seed=0, nj=1)
    assert wav.stat().st_mtime_ns == mtime
    assert _content(out) == _content(other)


@needs_tools
def test_cli_reuses_the_corpus_and_shows_defaults(tiny, capsys):
    from usad2.bin import prepare_demo

    out, _ = tiny
    assert prepare_demo.main(["--size", "tiny", "--out", str(out)]) == 0
    result = subprocess.run([os.sys.executable, "-m", "usad2.bin.prepare_demo", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--size {default,large,tiny}" in result.stdout and "(default: tiny)" in result.stdout


# ------------------------------------------------------------------- mixed-domain set (issue 16)

def test_mix_parts_hold_the_planned_energy_share():
    from usad2.data.demo.mixed import mix_parts, mix_waves
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(16000).astype(np.float32) * 0.1
    background = rng.standard_normal(5000).astype(np.float32)  # shorter: repeated
    for p in (0.25, 0.5, 0.85):
        s, b = mix_parts(speech, background, p)
        assert len(b) == len(s) == 16000 and np.allclose(b[5000:10000], b[:5000])
        assert np.sum(s ** 2) / (np.sum(s ** 2) + np.sum(b ** 2)) == pytest.approx(p, abs=1e-9)
    mixed = mix_waves(speech, background, 0.5)
    assert mixed.dtype == np.float32 and np.abs(mixed).max() == pytest.approx(10 ** (-3 / 20), rel=1e-6)


def test_true_shares_are_frame_averaged_over_sounding_frames():
    from usad2.data.demo.mixed import frame_shares
    # 4 frames of 0.1 s: speech only in frame 0 (energy 3 vs 1), frame 3 silent on both sides
    speech = np.zeros(6400)
    speech[:1600] = np.sqrt(3 / 1600)
    background = np.zeros(6400)
    background[:4800] = np.sqrt(1 / 1600)
    assert frame_shares(speech, background) == pytest.approx((0.75 + 0 + 0) / 3)
    # the clip-level share of the same parts would be 3 / 6 = 0.5
    assert frame_shares(np.zeros(100), np.zeros(100)) == 0.0


@needs_tools
def test_tiny_mixed_set_has_true_proportions_and_leaves_the_corpus_alone(tiny):
    from usad2.data.demo import mixed
    out, summary = tiny
    corpus_dirs = {s: load_data_dir(out / s) for s in SPLITS}
    plans = mixed.plan_mixes(corpus_dirs, "tiny", 0)
    assert len(plans) == sum(summary[f"mixed_{s}"]["utterances"] for s in SPLITS) >= 6
    for split in SPLITS:
        result = validate_data_dir(out / f"mixed_{split}", check_audio=True)
        assert result["utterances"] == summary[f"mixed_{split}"]["utterances"] > 0
        data = load_data_dir(out / f"mixed_{split}")
        truth = data.table("utt2domain_mix")
        assert not set(data.utt_ids) & set(corpus_dirs[split].utt_ids)  # not in the corpus sets
        for mix in (m for m in plans if m.split == split):
            p = truth[mix.utt]
            src = corpus_dirs[split].wav_scp
            speech = soundfile.read(src[mix.speech], dtype="float32")[0]
            background = soundfile.read(src[mix.background], dtype="float32")[0]
            assert 0.25 <= mix.p_speech <= 0.85 and sum(p) == pytest.approx(1.0)
            assert p[0] == round(mixed.frame_shares(*mixed.mix_parts(speech, background, mix.p_speech)), 4)
            assert p[("speech", "audio", "music").index(mix.background_domain)] == pytest.approx(1 - p[0])
            assert data.domain(mix.utt) == ("speech" if p[0] >= 0.5 else mix.background_domain)
            assert data.table("utt2word").get(mix.utt) == corpus_dirs[split].table("utt2word").get(mix.speech)
            # the wav is the planned mixture (16-bit rounding aside)
            wave, _ = soundfile.read(data.wav_scp[mix.utt], dtype="float32")
            expected = mixed.mix_waves(speech, background, mix.p_speech)
            assert np.abs(wave - expected).max() < 1e-4, mix.utt
