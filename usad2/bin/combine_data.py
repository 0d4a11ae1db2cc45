"""Combine Kaldi data dirs into one (argument order of Kaldi's utils/combine_data.sh).

    python -m usad2.bin.combine_data data/train_all data/speech data/music [--prefix_ids true]

Utterance ids found in two inputs are an error unless prefixes make them unique:
`--prefix_ids true` puts `<input folder name>-` before every id of that input,
`--prefixes a- b-` gives one explicit prefix per input. The output is written atomically.
"""
from usad2.data.combine import combine_data
from usad2.errors import ConfigError
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging


def get_parser():
    parser = make_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("out", help="output data dir (replaced whole)")
    parser.add_argument("inputs", nargs="+", help="input data dirs")
    parser.add_argument("--prefix_ids", type=str2bool, nargs="?", const=True, default=False,
                        help="prefix every id with its input folder's name and '-'")
    parser.add_argument("--prefixes", nargs="+", default=None,
                        help="explicit id prefix per input (same order as the inputs)")
    parser.add_argument("--allow_pipes", type=str2bool, nargs="?", const=True, default=False,
                        help="accept Kaldi pipe commands (`cmd |`) in wav.scp")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    log_invocation(setup_logging())
    if args.prefix_ids and args.prefixes:
        raise ConfigError("give either --prefix_ids or --prefixes, not both")
    prefixes = "auto" if args.prefix_ids else args.prefixes
    combine_data(args.inputs, args.out, prefixes=prefixes, allow_pipes=args.allow_pipes)
    return 0


if __name__ == "__main__":
    run_main(main)
