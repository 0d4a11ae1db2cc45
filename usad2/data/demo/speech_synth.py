"""Synthetic speech: single words from espeak-ng (7 languages) and flite (English).

Every utterance is one concept word (digit, colour or animal) said in one language by one
voice at one speaking rate and pitch, with a little silence around it. Labels: word (the
English concept, shared across languages), word_category, language, voice, source.
Splits hold voices out: espeak-ng voice variants and flite voices of dev and test never occur
in train (nor in each other), so a voice-independent probe is measured on unseen voices.
"""
import os
import subprocess
import tempfile

import numpy as np
import soundfile

from usad2.audio.resample import sox_resample_array
from usad2.data.demo.common import (SAMPLE_RATE, Clip, Job, pad, peak_normalise, require_tool,
                                    rng_for, split_counts, write_clip)
from usad2.errors import AudioError

CONCEPTS = ("zero one two three four five six seven eight nine "
            "red blue green yellow black white cat dog bird fish horse cow mouse").split()
CATEGORY = {**{c: "digit" for c in CONCEPTS[:10]}, **{c: "colour" for c in CONCEPTS[10:16]},
            **{c: "animal" for c in CONCEPTS[16:]}}
# The concept words in each language, in CONCEPTS order (espeak-ng language codes).
WORDS = {
    "en": CONCEPTS,
    "de": "null eins zwei drei vier fünf sechs sieben acht neun rot blau grün gelb schwarz weiß "
          "Katze Hund Vogel Fisch Pferd Kuh Maus".split(),
    "fr": "zéro un deux trois quatre cinq six sept huit neuf rouge bleu vert jaune noir blanc "
          "chat chien oiseau poisson cheval vache souris".split(),
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve rojo azul verde amarillo negro "
          "blanco gato perro pájaro pez caballo vaca ratón".split(),
    "it": "zero uno due tre quattro cinque sei sette otto nove rosso blu verde giallo nero "
          "bianco gatto cane uccello pesce cavallo mucca topo".split(),
    "nl": "nul een twee drie vier vijf zes zeven acht negen rood blauw groen geel zwart wit "
          "kat hond vogel vis paard koe muis".split(),
    "pt": "zero um dois três quatro cinco seis sete oito nove vermelho azul verde amarelo "
          "preto branco gato cão pássaro peixe cavalo vaca rato".split(),
}
# espeak-ng voice variants (files of espeak-ng-data/voices/!v) per split: disjoint.
ESPEAK_VOICES = {
    "train": "m1 m2 m3 m4 m5 f1 f2 f3 klatt klatt2 croak grandpa linda steph robert max".split(),
    "dev": "m6 f4 klatt3 aunty".split(),
    "test": "m7 f5 klatt4 edward anika".split(),
}
# flite voices per split (kal and kal16 are one speaker: both in train).
FLITE_VOICES = {"train": ["kal", "kal16", "rms"], "dev": ["awb"], "test": ["slt"]}
JOB_SIZE = 40


def plan_espeak(count, seed):
    """Jobs for `count` espeak-ng words over languages, voices, rates and pitches."""
    rng = rng_for(seed, "espeak")
    clips = []
    for split, n in split_counts(count).items():
        for i in range(n):
            lang = rng.choice(sorted(WORDS))
            index = rng.randrange(len(CONCEPTS))
            voice = rng.choice(ESPEAK_VOICES[split])
            spec = {"engine": "espeak", "text": WORDS[lang][index], "lang": lang,
                    "voice": voice, "rate": rng.randrange(110, 200, 5),
                    "pitch": rng.randrange(25, 80, 5), **_level(rng)}
            spk = f"espeak_{voice}"
            clips.append(_clip(f"{spk}-{split}{i:05d}", split, spk, CONCEPTS[index], lang,
                               voice, "espeak-ng", spec))
    return _jobs("espeak", clips)


def plan_flite(count, seed):
    """Jobs for `count` English words from flite voices with duration stretches."""
    rng = rng_for(seed, "flite")
    clips = []
    for split, n in split_counts(count).items():
        for i in range(n):
            index = rng.randrange(len(CONCEPTS))
            voice = rng.choice(FLITE_VOICES[split])
            spec = {"engine": "flite", "text": CONCEPTS[index], "voice": voice,
                    "stretch": round(rng.uniform(0.8, 1.4), 2), **_level(rng)}
            spk = f"flite_{voice}"
            clips.append(_clip(f"{spk}-{split}{i:05d}", split, spk, CONCEPTS[index], "en",
                               voice, "flite", spec))
    return _jobs("flite", clips)


def _level(rng):
    return {"before": round(rng.uniform(0.05, 0.3), 3), "after": round(rng.uniform(0.05, 0.3), 3),
            "peak_db": round(rng.uniform(-12, -1), 1)}


def _clip(utt, split, spk, concept, lang, voice, source, spec):
    labels = {"word": concept, "word_category": CATEGORY[concept], "language": lang,
              "voice": voice, "source": source}
    return Clip(utt, "speech", split, spk, labels, f"audio/speech/{utt}.wav", spec)


def _jobs(name, clips):
    return [Job(f"{name}{k // JOB_SIZE:04d}", "usad2.data.demo.speech_synth:render",
                clips[k:k + JOB_SIZE]) for k in range(0, len(clips), JOB_SIZE)]


def synthesize(spec, wav_path):
    """Run espeak-ng or flite for one spec into `wav_path` (the engine's own sample rate)."""
    if spec["engine"] == "espeak":
        cmd = ["espeak-ng", "-v", f"{spec['lang']}+{spec['voice']}", "-s", str(spec["rate"]),
               "-p", str(spec["pitch"]), "-w", wav_path, spec["text"]]
    else:
        cmd = ["flite", "-voice", spec["voice"], "--setf", f"duration_stretch={spec['stretch']}",
               "-t", spec["text"], "-o", wav_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not os.path.exists(wav_path):
        raise AudioError(f"{cmd[0]} failed for {spec}: {proc.stderr.strip()[-300:]}")


def render(job, out_dir):
    """Synthesize, resample to 16 kHz, trim, pad and level every clip of `job`."""
    require_tool("espeak-ng" if job.clips[0].spec["engine"] == "espeak" else "flite")
    durations = {}
    with tempfile.TemporaryDirectory(prefix="usad2_tts_") as tmp:
        for clip in job.clips:
            path = os.path.join(tmp, "tts.wav")
            synthesize(clip.spec, path)
            wave, sr = soundfile.read(path, dtype="float32", always_2d=True)
            wave = sox_resample_array(wave.mean(axis=1), sr, SAMPLE_RATE, name=clip.utt)
            wave = trim_silence(wave)
            wave = pad(peak_normalise(wave, clip.spec["peak_db"]), clip.spec["before"],
                       clip.spec["after"])
            durations[clip.utt] = write_clip(out_dir, clip, wave)
    return durations


def trim_silence(wave, threshold_db=-50.0):
    """Drop leading and trailing samples quieter than `threshold_db` below the peak."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    loud = np.nonzero(np.abs(wave) > peak * 10 ** (threshold_db / 20))[0]
    return wave[loud[0]:loud[-1] + 1] if loud.size else wave
