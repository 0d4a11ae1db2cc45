"""Shared command-line plumbing: argparse with defaults in --help, and error reporting.

`run_main(main)` turns a `Usad2Error` into one clear line on stderr and exit status 1
instead of a traceback, because such errors are the user's input, not a bug.
"""
import argparse
import errno
import sys

from usad2.errors import ConfigError, Usad2Error


def str2bool(value):
    """Parse true/false the way recipes pass booleans; anything else is an error."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def named_values(text, separator, option, form):
    """[(name, value text), ...] of a per-name option ("a=1;b=2", or a {name: value} dict from YAML).

    `separator` splits the entries; `option` and `form` (e.g. "NAME=SCALE") name the option and
    the expected spelling in the ConfigError for an entry without "=" or without a name.
    """
    if isinstance(text, dict):
        return [(str(name).strip(), value) for name, value in text.items()]
    items = []
    for part in str(text).split(separator):
        if part.strip():
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"{option}: {part.strip()!r} is not {form}")
            items.append((name.strip(), value))
    return items


def named_numbers(text, option, form, noun, valid, requirement):
    """{name: float} of a per-name numeric option ("a=2,b=0.5" or a {name: value} dict from YAML).

    `valid(x)` says whether a number is allowed; otherwise the ConfigError says the `noun` of the
    name "must be" `requirement`. A name given twice is an error.
    """
    out = {}
    for name, value in named_values(text, ",", option, form):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{option}: the {noun} of {name!r} is not a number: {value!r}") from None
        if not valid(number):
            raise ConfigError(f"{option}: the {noun} of {name!r} must be {requirement}, got {number}")
        if name in out:
            raise ConfigError(f"{option}: {name!r} is given twice")
        out[name] = number
    return out


def make_parser(description):
    """An ArgumentParser whose --help shows every default."""
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


class _RenamedOption(argparse.Action):
    """An option that only exists to say its new name: using it is a usage error."""

    def __init__(self, option_strings, dest, new_name, **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed {self.new_name} (same value)")


def add_renamed_option(parser, old, new):
    """Make the old spelling `old` of option `new` fail with an error that names `new`.

    Options get one name each (issue 13); a command line or script written for the old name
    then stops at once with the fix instead of failing later, or silently, on a dropped value.
    """
    parser.add_argument(old, dest=f"_renamed_{old.lstrip('-')}", action=_RenamedOption, new_name=new,
                        default=argparse.SUPPRESS)




def run_main(main, argv=None):
    """Call `main(argv)`; report a Usad2Error as one line and exit 1."""
    try:
        rc = main(argv)
    except Usad2Error as e:
        print(f"usad2 error: {e}", file=sys.stderr)
        sys.exit(1)
    except OSError as e:
        if e.errno not in _DISK_FULL:
            raise
        print(f"usad2 error: {disk_full_message(e)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(rc or 0)


# no space, file size limit (RLIMIT_FSIZE), quota: the user's environment, not a bug in usad2
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def disk_full_message(error):
    """One line for a write that failed because the disk (or a size limit or quota) is full."""
    where = f" writing {error.filename}" if error.filename else ""
    return (f"{error.strerror or error} (errno {errno.errorcode.get(error.errno, error.errno)}){where}: "
            "disk full or file size limit reached; outputs already complete are kept (writes are "
            "atomic), free space and rerun the same command to continue")
