"""Generate the demo corpus (audio + Kaldi data dirs) from installed Debian packages.

    python -m usad2.bin.prepare_demo --size tiny --out data [--seed 0] [--nj 2]
        [--train_soundfonts fluidr3,gmbank,opl3]

Writes DIR/audio, DIR/notes and the data dirs DIR/{speech,music,audio}_{train,dev,test} and
DIR/{train,dev,test}; see usad2.data.demo.corpus for the layout. A rerun with the same size,
seed and output is skipped (fingerprinted .done stamp); an interrupted run resumes.
"""
import logging

from usad2.data.demo import SIZES, generate_demo
from usad2.data.demo.music import EVAL_FONTS, FONTS, TRAIN_FONTS
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging


def get_parser():
    parser = make_parser(__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny",
                        help="corpus size: tiny (CI), default (>= 2 h), large (>= 10 h)")
    parser.add_argument("--out", required=True, help="output folder (e.g. data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same corpus)")
    parser.add_argument("--nj", type=int, default=1, help="parallel worker processes")
    parser.add_argument("--train_soundfonts", default=",".join(TRAIN_FONTS),
                        help="SoundFonts that render the train split's music, comma-separated, "
                             f"clip i with font i mod n (of {', '.join(FONTS)}; dev renders with "
                             f"{EVAL_FONTS['dev']}, test with {EVAL_FONTS['test']})")
    parser.add_argument("--force", type=str2bool, default=False,
                        help="regenerate even when the .done stamp matches")
    parser.add_argument("--log_level", default="INFO", help="logging level")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    log = setup_logging(args.log_level)
    log_invocation(log)
    summary = generate_demo(args.out, size=args.size, seed=args.seed, nj=args.nj,
                            force=args.force, train_fonts=args.train_soundfonts.split(","))
    for name, counts in sorted(summary.items()):
        logging.getLogger("usad2").info("%-14s %6d utterances %8.3f hours", name,
                                        counts["utterances"], counts["hours"])
    return 0


if __name__ == "__main__":
    run_main(main)
