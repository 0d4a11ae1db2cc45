"""Shared command-line plumbing: argparse with defaults in --help, and error reporting.

`run_main(main)` turns a `Usad2Error` into one clear line on stderr and exit status 1
instead of a traceback, because such errors are the user's input, not a bug.
"""
import argparse
import sys

from usad2.errors import Usad2Error


def str2bool(value):
    """Parse true/false the way recipes pass booleans; anything else is an error."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def make_parser(description):
    """An ArgumentParser whose --help shows every default."""
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def run_main(main, argv=None):
    """Call `main(argv)`; report a Usad2Error as one line and exit 1."""
    try:
        rc = main(argv)
    except Usad2Error as e:
        print(f"usad2 error: {e}", file=sys.stderr)
        sys.exit(1)
    sys.exit(rc or 0)
