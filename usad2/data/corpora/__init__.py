"""Real-corpus preparers: `prepare_<corpus>(root, out, subsets=..., ...)` -> Kaldi data dir.

Each reads the corpus's own published layout (see each module's docstring), writes a data dir
with utt2domain (speech, audio or music, from the corpus) and the corpus's labels, and returns
the DataDir. `PREPARERS` maps the `--corpus` names of `python -m usad2.bin.prepare_corpus`.
"""
from usad2.data.corpora.audioset import prepare_audioset
from usad2.data.corpora.commonvoice import prepare_commonvoice
from usad2.data.corpora.gigaspeech import prepare_gigaspeech
from usad2.data.corpora.jamendo import prepare_jamendo
from usad2.data.corpora.librilight import prepare_librilight
from usad2.data.corpora.librispeech import prepare_librispeech
from usad2.data.corpora.voxpopuli import prepare_voxpopuli

PREPARERS = {
    "librispeech": prepare_librispeech,
    "librilight": prepare_librilight,
    "voxpopuli": prepare_voxpopuli,
    "gigaspeech": prepare_gigaspeech,
    "commonvoice": prepare_commonvoice,
    "audioset": prepare_audioset,
    "jamendo": prepare_jamendo,
}

__all__ = ["PREPARERS"] + [f.__name__ for f in PREPARERS.values()]
