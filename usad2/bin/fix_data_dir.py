"""Repair a Kaldi data dir like Kaldi's fix_data_dir.sh: sort, drop inconsistent entries.

    python -m usad2.bin.fix_data_dir data/train [--out data/train_fixed] [--allow_pipes true]

Malformed lines, duplicates, utterances missing from a file that must cover all of them and
recordings nothing uses are dropped (each kind counted in the log); the result is validated and
written atomically, in place unless --out is given.
"""
from usad2.data.consistency import DEFAULT_TOLERANCE
from usad2.data.fix import fix_data_dir
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging


def get_parser():
    parser = make_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("data_dir", help="the Kaldi data dir to fix")
    parser.add_argument("--out", default=None, help="write the fixed dir here instead of in place")
    parser.add_argument("--allow_pipes", type=str2bool, nargs="?", const=True, default=False,
                        help="keep Kaldi pipe commands (`cmd |`) in wav.scp instead of dropping them")
    parser.add_argument("--check_audio", type=str2bool, nargs="?", const=True, default=False,
                        help="drop recordings whose audio file does not exist")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="seconds a segment may reach past the end of its recording")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    log_invocation(setup_logging())
    fix_data_dir(args.data_dir, out=args.out, allow_pipes=args.allow_pipes,
                 check_audio=args.check_audio, tolerance=args.tolerance)
    return 0


if __name__ == "__main__":
    run_main(main)
