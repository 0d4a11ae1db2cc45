"""Exceptions that usad2 raises for bad input.

Every error a user can cause (a broken data dir, unreadable audio, a bad checkpoint) is one of
these, with a message that names the file and line or utterance and what is wrong, so command
lines can print it without a traceback from deep inside a library.
"""


class Usad2Error(Exception):
    """Base class of every usad2 error caused by input rather than by a bug."""


class DataDirError(Usad2Error):
    """A Kaldi-style data dir file is malformed or inconsistent (names file and line)."""


class AudioError(Usad2Error):
    """Audio cannot be read or breaks the 16 kHz float contract (names the utterance/file)."""


class CheckpointError(Usad2Error):
    """A checkpoint or export is missing keys, has an unknown format, or does not match."""


class TeacherError(Usad2Error):
    """A teacher card or teacher checkpoint is missing or inconsistent."""


class ConfigError(Usad2Error):
    """A command-line option or configuration value is invalid."""
