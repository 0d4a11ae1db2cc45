"""Logging set-up shared by every `python -m usad2.bin.<verb>` command.

Each command logs, before anything else, its full command line, the interpreter and where
usad2 was imported from, so a log file says exactly what ran.
"""
import logging
import os
import shlex
import sys

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def setup_logging(level="INFO", log_file=None):
    """Configure the root logger to stderr (and optionally a file); return the usad2 logger."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=getattr(logging, str(level).upper()), format=LOG_FORMAT,
                        handlers=handlers, force=True)
    return logging.getLogger("usad2")


def command_line():
    """The current command line, shell-quoted so it can be pasted back."""
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", _module_name()] + sys.argv[1:])


def _module_name():
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else sys.argv[0]


def log_invocation(logger):
    """Log the command line, the interpreter and the usad2 package location."""
    import usad2

    logger.info("command: %s", command_line())
    logger.info("python: %s; usad2 %s from %s", sys.executable, usad2.__version__,
                os.path.dirname(usad2.__file__))
