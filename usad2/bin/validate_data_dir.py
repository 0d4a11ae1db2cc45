"""Check a Kaldi data dir and print a summary, or every problem as `<file>:<line>: <problem>`.

    python -m usad2.bin.validate_data_dir data/train [--allow_pipes true] [--no_audio_check]
        [--check_audio]

Exit status 0 with a summary line (utterances, hours if utt2dur, utterances per domain, and what
was checked) on stdout; 1 with the list of problems on stderr. By default audio files must exist
and contain their segments; --check_audio also opens every file's header.
"""
from usad2.data.consistency import DEFAULT_TOLERANCE
from usad2.data.kaldi_text import DEFAULT_MAX_PROBLEMS
from usad2.data.validate import format_summary, validate_data_dir
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging


def get_parser():
    parser = make_parser(__doc__.strip().splitlines()[0])
    parser.add_argument("data_dir", help="the Kaldi data dir to check")
    parser.add_argument("--allow_pipes", type=str2bool, nargs="?", const=True, default=False,
                        help="accept Kaldi pipe commands (`cmd |`) in wav.scp")
    parser.add_argument("--no_audio_check", action="store_true",
                        help="skip checking that audio files exist and contain their segments")
    parser.add_argument("--check_audio", type=str2bool, nargs="?", const=True, default=False,
                        help="also open every audio file's header: empty, random-byte and truncated "
                             "files are reported (slower; pipes are never run)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="seconds a segment may reach past the end of its recording")
    parser.add_argument("--max_problems", type=int, default=DEFAULT_MAX_PROBLEMS,
                        help="list at most this many problems (all are counted)")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    log_invocation(setup_logging())
    summary = validate_data_dir(args.data_dir, allow_pipes=args.allow_pipes,
                                check_audio=not args.no_audio_check, tolerance=args.tolerance,
                                max_problems=args.max_problems, open_audio=args.check_audio)
    print(format_summary(args.data_dir, summary))
    return 0


if __name__ == "__main__":
    run_main(main)
