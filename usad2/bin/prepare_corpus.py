"""Prepare a Kaldi data dir from a real corpus on disk (LibriSpeech, Common Voice, AudioSet, ...).

    python -m usad2.bin.prepare_corpus --corpus librispeech --root /data/LibriSpeech \
        --out data/libri_train --subsets train-clean-100,train-clean-360

Each corpus's expected layout and the labels it yields are in usad2/data/corpora/<corpus>.py.
Every utterance gets utt2domain from its corpus (speech: librispeech, librilight, voxpopuli,
gigaspeech, commonvoice; audio: audioset; music: jamendo). --subsets names the corpus's own
subsets (LibriSpeech folders, Common Voice TSV names, GigaSpeech XS..XL, AudioSet
balanced_train/unbalanced_train/eval, MTG-Jamendo TSV paths, VoxPopuli train/dev/test/unlabelled).
The data dir is written atomically.
"""
import inspect

from usad2.data.corpora import PREPARERS
from usad2.errors import ConfigError
from usad2.utils.cli import make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging


def build_parser():
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, choices=sorted(PREPARERS), help="corpus name")
    p.add_argument("--root", required=True, help="the corpus's folder on disk")
    p.add_argument("--out", required=True, help="output Kaldi data dir (replaced whole)")
    p.add_argument("--subsets", default="",
                   help="comma-separated subsets (empty: the corpus preparer's default)")
    p.add_argument("--lang", default=None, help="language (voxpopuli, commonvoice)")
    p.add_argument("--chunk_seconds", type=float, default=None,
                   help="longest utterance cut from voice activity (librilight; default 20)")
    return p


def prepare_corpus(corpus, root, out, subsets=None, **options):
    """Run the preparer of `corpus`; options it does not take are a ConfigError."""
    if corpus not in PREPARERS:
        raise ConfigError(f"unknown corpus {corpus!r} (known: {', '.join(sorted(PREPARERS))})")
    function = PREPARERS[corpus]
    accepted = inspect.signature(function).parameters
    given = {k: v for k, v in options.items() if v is not None}
    for name in given:
        if name not in accepted:
            raise ConfigError(f"--{name} does not apply to corpus {corpus}")
    if subsets:
        given["subsets"] = list(subsets)
    return function(root, out, **given)


def main(argv=None):
    args = build_parser().parse_args(argv)
    log_invocation(setup_logging())
    subsets = [s for s in args.subsets.split(",") if s]
    prepare_corpus(args.corpus, args.root, args.out, subsets, lang=args.lang,
                   chunk_seconds=args.chunk_seconds)
    return 0


if __name__ == "__main__":
    run_main(main)
