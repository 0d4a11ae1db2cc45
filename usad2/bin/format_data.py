"""Stage 2: format a data dir into 16 kHz mono WAV files, segmenting and filtering clips.

    python -m usad2.bin.format_data --in data/train --out dump/raw/train \
        [--min_seconds 0.5 --max_seconds 30 --segment_seconds 10 --segment_domains audio,music \
         --silence_dbfs -60 --nj 4]

Sound and music longer than --segment_seconds are cut into pieces `<utt>-<start ms>`; clips
outside [--min_seconds, --max_seconds] and silent clips are dropped and listed with their reason
in `<out>/dropped`. The output (audio/, wav.scp, utt2dur, utt2num_samples and the input's label
files) is written atomically and stamped; a rerun with the same options and input is skipped,
--force true redoes it. Full-scale settings (docs/method.md#37-training-data): --min_seconds 2
--max_seconds 30.
"""
from usad2.data.format import SAMPLE_FORMATS, FormatConfig, format_data
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging

_DEFAULTS = FormatConfig()


def build_parser():
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--in", dest="in_dir", required=True, help="input Kaldi data dir")
    p.add_argument("--out", dest="out_dir", required=True,
                   help="output dir (data dir + audio/; replaced whole)")
    p.add_argument("--min_seconds", type=float, default=_DEFAULTS.min_seconds,
                   help="drop output utterances shorter than this")
    p.add_argument("--max_seconds", type=float, default=_DEFAULTS.max_seconds,
                   help="drop output utterances longer than this (after segmentation)")
    p.add_argument("--segment_seconds", type=float, default=_DEFAULTS.segment_seconds,
                   help="cut utterances of --segment_domains longer than this into pieces of "
                        "this length (0: never cut)")
    p.add_argument("--segment_domains", default=",".join(_DEFAULTS.segment_domains),
                   help="comma-separated domains (utt2domain) whose long utterances are cut")
    p.add_argument("--silence_dbfs", type=float, default=_DEFAULTS.silence_dbfs,
                   help="drop clips whose loudest 50 ms frame is below this RMS level "
                        "(--silence_dbfs=-inf keeps silent clips)")
    p.add_argument("--sample_format", choices=sorted(SAMPLE_FORMATS),
                   default=_DEFAULTS.sample_format, help="sample format of the written WAVs")
    p.add_argument("--drop_unreadable", type=str2bool, default=False,
                   help="drop (and list) utterances whose audio cannot be decoded instead of "
                        "stopping")
    p.add_argument("--allow_pipes", type=str2bool, default=False,
                   help="allow Kaldi `cmd |` entries in the input wav.scp")
    p.add_argument("--nj", type=int, default=1, help="parallel worker processes")
    p.add_argument("--force", type=str2bool, default=False, help="redo even when stamped done")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    log_invocation(setup_logging())
    domains = tuple(d for d in args.segment_domains.split(",") if d)
    config = FormatConfig(args.min_seconds, args.max_seconds, args.segment_seconds, domains,
                          args.silence_dbfs, args.sample_format, args.drop_unreadable,
                          args.allow_pipes)
    format_data(args.in_dir, args.out_dir, config, nj=args.nj, force=args.force)
    return 0


if __name__ == "__main__":
    run_main(main)
