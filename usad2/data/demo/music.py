"""Music: fluidsynth renders of generated MIDI (single notes, chord phrases) and MMA grooves.

- notes: one note of a General MIDI program (families 0-14; 15 "sound effects" is unpitched)
  at a pitch inside the family's usual range. Labels: instrument_family (program // 8, named),
  program, pitch (MIDI note), pitch_class (C, C#, ...).
- chords: two or three strikes (block or arpeggio) of one chord (root, quality, inversion) on
  a chord-playing program. Labels: chord_quality, chord_root, instrument_family, program.
- grooves: 4 bars of an MMA groove over a chord progression in a random key and tempo.
  Labels: style (groove family), groove, key.
Every clip also gets a note table (`notes/<utt>.tsv`, see `usad2.data.demo.notes`).
Splits hold the SoundFont out: train and dev render with FluidR3_GM (dev with its own draws),
test with TimGM6mb. Train may render with several SoundFonts instead (`train_fonts`: clip i
with font i mod n, so the labels stay those of the one-font corpus), never with the test's.
Notes and chords are rendered many clips per fluidsynth run, one SoundFont each (one MIDI file
with the clips in time slots, reverb and chorus off so nothing leaks between slots, all sound
off at each slot's end); grooves one per run, with reverb.
"""
import os
import subprocess
import tempfile

import soundfile

from usad2.data.demo import midi
from usad2.data.demo.common import (SAMPLE_RATE, Clip, Job, peak_normalise, require_path,
                                    require_tool, rng_for, split_counts, write_clip)
from usad2.data.demo.notes import write_notes
from usad2.errors import AudioError, ConfigError

# SoundFonts the demo renders with: name (the clips' speaker prefix) -> (file, Debian package).
FONTS = {"fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
         "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
         "gmbank": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont"),
         "opl3": ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2", "opl3-soundfont")}
# (MuseScore General, also in the registry, is made from FluidR3: its renders of the demo's
# chords correlate 0.9996 in spectrum with FluidR3's, so it adds no new instrument voices.)
TRAIN_FONTS = ("fluidr3",)  # default SoundFonts of the train split
EVAL_FONTS = {"dev": "fluidr3", "test": "timgm6mb"}  # the test's font is held out of train
FAMILIES = ("piano chromatic_percussion organ guitar bass strings ensemble brass reed pipe "
            "synth_lead synth_pad synth_effects ethnic percussive sound_effects").split()
PITCH_CLASSES = "C C# D D# E F F# G G# A A# B".split()
# Usual MIDI pitch range of each family (inclusive), so that notes sound like the instrument.
PITCH_RANGE = {"piano": (36, 96), "chromatic_percussion": (60, 96), "organ": (36, 84),
               "guitar": (40, 76), "bass": (28, 55), "strings": (43, 84), "ensemble": (48, 79),
               "brass": (45, 77), "reed": (50, 81), "pipe": (60, 93), "synth_lead": (48, 84),
               "synth_pad": (48, 79), "synth_effects": (48, 79), "ethnic": (52, 81),
               "percussive": (48, 72)}
# Programs whose samples stop short of their family's range in FluidR3_GM or TimGM6mb (found
# by rendering every program over a pitch grid: these notes come out silent).
PROGRAM_RANGE = {43: (28, 55), 58: (28, 70), 67: (36, 72), 78: (60, 79)}
# Highest sounding note of a program in one SoundFont only, below PROGRAM_RANGE (a full
# program x pitch grid of both SoundFonts: TimGM6mb's whistle stops at 78). Applied after the
# draw, so the random stream, and with it every corpus that rendered before, stays the same.
FONT_PITCH_CEILING = {"TimGM6mb.sf2": {78: 78}}
CHORDS = {"major": (0, 4, 7), "minor": (0, 3, 7), "diminished": (0, 3, 6),
          "augmented": (0, 4, 8), "sus2": (0, 2, 7), "sus4": (0, 5, 7),
          "dominant7": (0, 4, 7, 10), "major7": (0, 4, 7, 11), "minor7": (0, 3, 7, 10)}
CHORD_FAMILIES = ("piano", "organ", "guitar", "strings", "ensemble", "synth_pad", "brass", "reed")
CHORD_PROGRAMS = [FAMILIES.index(f) * 8 + k for f in CHORD_FAMILIES for k in range(8)
                  if FAMILIES.index(f) * 8 + k not in PROGRAM_RANGE]
GROOVES = {
    "rock": "50sRock 60sRock BasicRock SoftRock FolkRock",
    "swing": "Swing JazzCombo Bebop FastSwing EasySwing BigBand Dixie",
    "latin": "BossaNova Rhumba Samba Mambo ChaCha Salsa Beguine Tango Merengue",
    "waltz": "Waltz CountryWaltz FrenchWaltz VieneseWaltz JazzWaltz RockWaltz",
    "blues": "Blues FastBlues SlowBlues CountryBlues ShuffleBoggie",
    "country": "CountrySwing Bluegrass Folk SlowCountry WesternSwing",
    "march": "March DixieMarch BWMarch 68March Polka",
    "ballad": "Ballad PianoBallad PopBallad RockBallad StringBallad",
}
PROGRESSIONS = ("I vi IV V", "I IV V I", "ii V I I", "I V vi IV", "vi IV I V", "I I IV V")
_DEGREES = {"I": (0, ""), "ii": (2, "m"), "IV": (5, ""), "V": (7, "7"), "vi": (9, "m")}
_KEYS = "C Db D Eb E F Gb G Ab A Bb B".split()
RELEASE = 0.6  # s of release kept after the last note-off of a note/chord clip
SLOT_GAP = 0.3  # s of silence between clip slots of a batched render
JOB_SIZE = 40


def soundfont(name):
    """Path of SoundFont `name` (a FONTS key; ConfigError if its package is missing)."""
    path, package = FONTS[name]
    return require_path(path, package)


def check_train_fonts(train_fonts):
    """`train_fonts` as a tuple of FONTS names; ConfigError on an unknown or held-out one."""
    fonts = tuple(train_fonts)
    unknown = [f for f in fonts if f not in FONTS]
    if not fonts or unknown or len(set(fonts)) != len(fonts):
        raise ConfigError(f"train SoundFonts {','.join(fonts)!r}: distinct names out of "
                          f"{', '.join(FONTS)}")
    if EVAL_FONTS["test"] in fonts:
        raise ConfigError(f"train SoundFonts {','.join(fonts)}: {EVAL_FONTS['test']} "
                          "renders the test split and stays out of train")
    return fonts


def _split_fonts(split, train_fonts):
    return check_train_fonts(train_fonts) if split == "train" else (EVAL_FONTS[split],)


def program_range(program):
    """The MIDI pitches (low, high) the note planner draws `program` from."""
    return PROGRAM_RANGE.get(program, PITCH_RANGE[FAMILIES[program // 8]])


def pitch_ceiling(font, program):
    """The highest note `program` sounds in SoundFont file `font` (127 where no ceiling is known)."""
    return FONT_PITCH_CEILING.get(os.path.basename(font), {}).get(program, 127)


def _labels_program(program):
    return {"instrument_family": FAMILIES[program // 8], "program": str(program)}


def plan_notes(count, seed, length, train_fonts=TRAIN_FONTS):
    """Jobs for `count` single-note clips of at most `length` seconds."""
    rng = rng_for(seed, "notes")
    clips = []
    for split, n in split_counts(count).items():
        fonts = _split_fonts(split, train_fonts)
        for i in range(n):
            font = fonts[i % len(fonts)]
            program = rng.randrange(15 * 8)
            pitch = min(rng.randint(*program_range(program)), pitch_ceiling(FONTS[font][0], program))
            dur = round(rng.uniform(0.3, max(0.35, length - RELEASE)), 3)
            notes = [(pitch, 0.0, dur, rng.randint(60, 120))]
            labels = {**_labels_program(program), "pitch": str(pitch),
                      "pitch_class": PITCH_CLASSES[pitch % 12], "source": "fluidsynth"}
            clips.append(_clip(f"{font}_note-{split}{i:05d}", split, f"{font}_note", labels,
                               {"program": program, "notes": notes, "length": dur + RELEASE,
                                "font": font}))
    return _batched("notes", clips)


def plan_chords(count, seed, length, train_fonts=TRAIN_FONTS):
    """Jobs for `count` chord-phrase clips of at most `length` seconds."""
    rng = rng_for(seed, "chords")
    clips = []
    for split, n in split_counts(count).items():
        fonts = _split_fonts(split, train_fonts)
        for i in range(n):
            font = fonts[i % len(fonts)]
            program = rng.choice(CHORD_PROGRAMS)
            quality, root = rng.choice(sorted(CHORDS)), rng.randrange(12)
            pitches = _voicing(root, CHORDS[quality], rng.randrange(len(CHORDS[quality])), rng)
            notes, end = _phrase(pitches, length, rng)
            labels = {**_labels_program(program), "chord_quality": quality,
                      "chord_root": PITCH_CLASSES[root], "source": "fluidsynth"}
            clips.append(_clip(f"{font}_chord-{split}{i:05d}", split, f"{font}_chord", labels,
                               {"program": program, "notes": notes, "length": end + RELEASE,
                                "font": font}))
    return _batched("chords", clips)


def _voicing(root, intervals, inversion, rng):
    """MIDI pitches of the chord in an inversion, its bass note in octave 3 or 4."""
    base = 48 + root if root >= 4 else 60 + root
    base -= 12 * rng.randrange(2) if base >= 60 else 0
    pitches = [base + i for i in intervals]
    return sorted(pitches[inversion:] + [p + 12 for p in pitches[:inversion]])


def _phrase(pitches, length, rng):
    """2-3 strikes of `pitches` (block or arpeggio) fitting in `length` - RELEASE seconds."""
    strikes = rng.choice((2, 3))
    span = max(0.6, length - RELEASE)
    step = round(span / strikes, 3)
    notes = []
    for k in range(strikes):
        arpeggio = rng.random() < 0.4
        velocity = rng.randint(60, 115)
        for j, pitch in enumerate(pitches):
            start = round(k * step + (j * min(0.08, step / 8) if arpeggio else 0.0), 3)
            notes.append((pitch, start, round((k + 1) * step - 0.02, 3), velocity))
    return notes, round(strikes * step - 0.02, 3)


def _clip(utt, split, spk, labels, spec):
    return Clip(utt, "music", split, spk, labels, f"audio/music/{utt}.wav", spec,
                notes=f"notes/{utt}.tsv")


def _batched(name, clips):
    """Jobs of at most JOB_SIZE clips, each of one split and one SoundFont (one fluidsynth run)."""
    jobs = []
    for split in ("train", "dev", "test"):
        for font in FONTS:
            part = [c for c in clips if c.split == split and c.spec["font"] == font]
            for k in range(0, len(part), JOB_SIZE):
                jobs.append(Job(f"{name}_{split}_{font}{k // JOB_SIZE:04d}",
                                "usad2.data.demo.music:render_batch", part[k:k + JOB_SIZE],
                                {"font": font}))
    return jobs


def plan_grooves(count, seed, length, train_fonts=TRAIN_FONTS):
    """Jobs for `count` MMA groove clips of `length` seconds (4 bars, then cut)."""
    rng = rng_for(seed, "grooves")
    clips = []
    for split, n in split_counts(count).items():
        fonts = _split_fonts(split, train_fonts)
        for i in range(n):
            font = fonts[i % len(fonts)]
            style = rng.choice(sorted(GROOVES))
            groove = rng.choice(GROOVES[style].split())
            key = rng.randrange(12)
            spec = {"groove": groove, "key": key, "tempo": rng.randrange(90, 150, 5),
                    "progression": rng.choice(PROGRESSIONS), "length": length,
                    "mma_seed": rng.randrange(2**31), "font": font}
            labels = {"style": style, "groove": groove.lower(), "key": PITCH_CLASSES[key],
                      "source": "mma"}
            clips.append(_clip(f"{font}_groove-{split}{i:05d}", split, f"{font}_groove", labels,
                               spec))
    return [Job(f"grooves{k // 8:04d}", "usad2.data.demo.music:render_grooves",
                clips[k:k + 8]) for k in range(0, len(clips), 8)]


# ----------------------------------------------------------------------------------- render


def fluidsynth(midi_path, font, wav_path, effects=True):
    """Render `midi_path` with `font` to a 16 kHz float WAV; return the mono waveform."""
    require_tool("fluidsynth")
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(SAMPLE_RATE), "-O", "float",
           "-T", "wav", "-F", wav_path]
    if not effects:
        cmd += ["-R", "0", "-C", "0"]
    proc = subprocess.run(cmd + [font, midi_path], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not os.path.exists(wav_path):
        raise AudioError(f"fluidsynth failed on {midi_path} with {font}: {proc.stderr[-300:]}")
    wave, sr = soundfile.read(wav_path, dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise AudioError(f"fluidsynth wrote {sr} Hz instead of {SAMPLE_RATE} Hz ({wav_path})")
    return wave.mean(axis=1)


def render_batch(job, out_dir):
    """Render all note/chord clips of `job` in one fluidsynth run and cut them out."""
    events, starts, now = [], [], 0.0
    for clip in job.clips:
        starts.append(now)
        events.append(midi.control_change(now, 0, 121))
        events.append(midi.program_change(now, 0, clip.spec["program"]))
        for pitch, start, end, velocity in clip.spec["notes"]:
            events += midi.note_events(midi.Note(pitch, now + start, now + end, velocity))
        now = round(now + clip.spec["length"], 3)
        events.append(midi.control_change(now, 0, 120))
        now = round(now + SLOT_GAP, 3)
    durations = {}
    with tempfile.TemporaryDirectory(prefix="usad2_fs_") as tmp:
        mid = os.path.join(tmp, "batch.mid")
        with open(mid, "wb") as f:
            f.write(midi.midi_bytes(events, end_time=now))
        wave = fluidsynth(mid, soundfont(job.spec["font"]), os.path.join(tmp, "batch.wav"),
                          effects=False)
    for clip, start in zip(job.clips, starts):
        a = round(start * SAMPLE_RATE)
        piece = wave[a:a + round(clip.spec["length"] * SAMPLE_RATE)]
        durations[clip.utt] = write_clip(out_dir, clip, peak_normalise(piece, -3.0))
        notes = [midi.Note(p, s, e, v) for p, s, e, v in clip.spec["notes"]]
        write_notes(os.path.join(out_dir, clip.notes), notes, durations[clip.utt])
    return durations


def mma_text(spec):
    """The .mma source of one groove clip: random seed, tempo, groove, 4 bars of chords."""
    key = _KEYS[spec["key"]]
    lines = [f"RndSeed {spec['mma_seed']}", f"Tempo {spec['tempo']}", f"Groove {spec['groove']}"]
    for bar, degree in enumerate(spec["progression"].split(), start=1):
        offset, suffix = _DEGREES[degree]
        lines.append(f"{bar} {_KEYS[(_KEYS.index(key) + offset) % 12]}{suffix}")
    return "\n".join(lines) + "\n"


# MMA is a Python program: its random humanisation is seeded by RndSeed, and a fixed hash seed
# keeps its dict/set orders stable, so a groove renders to the same MIDI every time.
_MMA_ENV = {**os.environ, "PYTHONHASHSEED": "0"}


def render_grooves(job, out_dir):
    """Write each groove's .mma, run mma to MIDI, render with the clip's SoundFont, cut."""
    require_tool("mma")
    durations = {}
    with tempfile.TemporaryDirectory(prefix="usad2_mma_") as tmp:
        for clip in job.clips:
            src, mid = os.path.join(tmp, "groove.mma"), os.path.join(tmp, "groove.mid")
            with open(src, "w", encoding="utf-8") as f:
                f.write(mma_text(clip.spec))
            proc = subprocess.run(["mma", src, "-f", mid], capture_output=True, text=True,
                                  cwd=tmp, check=False, env=_MMA_ENV)
            if proc.returncode != 0 or not os.path.exists(mid):
                raise AudioError(f"utterance {clip.utt!r}: mma failed on groove "
                                 f"{clip.spec['groove']}: {(proc.stdout + proc.stderr)[-300:]}")
            wave = fluidsynth(mid, soundfont(clip.spec["font"]), os.path.join(tmp, "groove.wav"))
            piece = wave[:round(clip.spec["length"] * SAMPLE_RATE)]
            durations[clip.utt] = write_clip(out_dir, clip, peak_normalise(piece, -3.0))
            write_notes(os.path.join(out_dir, clip.notes), midi.read_notes(mid),
                        durations[clip.utt])
            os.unlink(mid)
    return durations
