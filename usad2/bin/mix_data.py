"""Stage 3: combine formatted sets into a domain-balanced training list (utt2weight) and a dev list.

    python -m usad2.bin.mix_data --train dump/raw/a_train,dump/raw/b_train --out dump/raw/train_mix \
        [--dev dump/raw/a_dev,dump/raw/b_dev --dev_out dump/raw/dev_mix] [--balance domain]

With --balance domain every domain's total sampling mass (seconds of audio times weight) is made
equal by upsampling the smaller domains: w_u = b_u * max_d M_d / M_{d(u)} with M_d the
b-weighted seconds of domain d and b_u the input utt2weight (else 1); see usad2.data.mix.
--balance none keeps b_u. Ids must be unique across inputs unless --prefix_ids true.
Outputs are written atomically and stamped; a rerun with the same inputs is skipped.
"""
from usad2.data.mix import BALANCES, mix_data
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging


def _dirs(text):
    return [p for p in text.split(",") if p] if text else []


def build_parser():
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--train", required=True, help="comma-separated formatted training sets")
    p.add_argument("--out", required=True, help="output training list (data dir)")
    p.add_argument("--dev", default="", help="comma-separated formatted dev sets (optional)")
    p.add_argument("--dev_out", default="", help="output dev list (with --dev)")
    p.add_argument("--balance", choices=BALANCES, default="domain",
                   help="domain: equal sampling mass per domain; none: input weights (or 1)")
    p.add_argument("--prefix_ids", type=str2bool, default=False,
                   help="prefix every id with '<input folder name>-' (for colliding ids)")
    p.add_argument("--force", type=str2bool, default=False, help="redo even when stamped done")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    log_invocation(setup_logging())
    mix_data(_dirs(args.train), args.out, _dirs(args.dev), args.dev_out or None,
             balance=args.balance, prefix_ids=args.prefix_ids, force=args.force)
    return 0


if __name__ == "__main__":
    run_main(main)
