"""Infer a speech / audio / music posterior for every utterance of a data dir (utt2domain_post).

    python -m usad2.bin.infer_domains --data DIR [--tagger yamnet] [--out DIR] [--hard true]

The default tagger is the YAMNet demo teacher's 521 class scores mapped through the AudioSet
ontology (usad2/domains/taggers/yamnet.{yaml,tsv}: Speech subtree -> speech, Music subtree ->
music, the rest -> audio); `--tagger PATH` takes any tagger YAML (a card whose layer holds class
scores plus a class -> domain mapping file, docs/formats.md). Frame posteriors are averaged per
utterance (per segment where the data dir has `segments`). Without --out the files are added to
DIR itself; --hard true also writes utt2domain (the most probable domain; never over existing
labels in place). Distillation reads the posteriors with `--domain_source infer` or `mixed`.
"""
import json

import torch

from usad2.domains.infer import infer_domains
from usad2.teachers.registry import add_teacher_cards_option
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging


def build_parser():
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="Kaldi data dir to tag")
    p.add_argument("--tagger", default="yamnet", help="shipped tagger name or path of a tagger YAML")
    p.add_argument("--out", default="", help="write a copy of the data dir with the new files here "
                                             "(default: add the files to --data)")
    p.add_argument("--hard", type=str2bool, default=False,
                   help="also write utt2domain: each utterance's most probable domain")
    p.add_argument("--allow_pipes", type=str2bool, default=False, help="accept Kaldi pipes in wav.scp")
    p.add_argument("--device", default="cpu", help="device of the tagger's teacher")
    p.add_argument("--force", type=str2bool, default=False, help="redo even when stamped done")
    add_teacher_cards_option(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    log_invocation(setup_logging())
    torch.set_num_threads(1)
    summary = infer_domains(args.data, args.out or None, tagger=args.tagger, hard=args.hard,
                            force=args.force, card_dirs=args.teacher_cards,
                            allow_pipes=args.allow_pipes, device=args.device)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    run_main(main)
