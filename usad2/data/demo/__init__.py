"""The embedded demo corpus (docs/architecture.md#7-demo-corpus): speech, music and general audio
generated from Debian packages only, with domain and task labels and leakage-free train/dev/test
splits.

One module per source (speech_synth: espeak-ng + flite; speech_real: KTuberling + KLettres;
music: fluidsynth renders of generated MIDI and MMA grooves; sounds: Hydrogen kits, Sonic Pi,
LMMS, freedesktop sounds), `midi` (a small MIDI writer/reader), `notes` (note tables) and the
driver `corpus.generate_demo`, which `python -m usad2.bin.prepare_demo` calls.
"""
from usad2.data.demo.corpus import SIZES, generate_demo

__all__ = ["SIZES", "generate_demo"]
