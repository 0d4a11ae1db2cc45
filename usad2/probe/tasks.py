"""Probing tasks: which label file of which data dirs, at which level, scored by which metric.

A task = (name, domain, label file, level, metric, train/dev/test data dir names). Data dirs
live under one `data_root` (the recipe's dump/raw) and hold every domain mixed; a task uses the
utterances its label file lists (a `utt2<label>` file may cover a subset of a data dir).

Utterance-level tasks read one token per utterance (single-label; classes = the training
labels) or, with metric "map", any number of tokens (multi-label). Frame-level tasks read note
events from their label file: per utterance either the path of a note table (the demo
corpus's `notes/<utt>.tsv`: a header `onset<TAB>offset<TAB>pitch<TAB>velocity`, then one note a
line, times in seconds from the clip start; relative paths are relative to the working
directory, as in wav.scp) or inline triples `start end midi_pitch`
(`utt7 0.10 0.60 60 0.60 1.10 64`). A piece that stage 2 cut out of a longer clip (id
`<clip>-<start ms, 7 digits>`, table named after `<clip>`) has its note times shifted by the
piece's start. Each frame of a probed model (at its own rate
and frame offset) gets the label `frame_target` derives from the notes sounding at its centre:
"activity" (note / none) or "pitch_class" (the lowest sounding note's pitch class, or none).

A task whose label file is missing from any of its data dirs is skipped with a log line, so the
same suite runs on corpora that carry only some of the labels.
"""
import dataclasses
import logging
import os
import re

import numpy as np

from usad2.errors import ConfigError, DataDirError

logger = logging.getLogger(__name__)

LEVELS = ("utterance", "frame")
FRAME_TARGETS = ("activity", "pitch_class")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
NO_NOTE = "none"


@dataclasses.dataclass(frozen=True)
class Task:
    """One probing task. `labels` lists candidate label files; the first present is used."""

    name: str
    domain: str
    labels: tuple
    level: str = "utterance"
    metric: str = "accuracy"
    train: str = "train"
    dev: str = "dev"
    test: str = "test"
    frame_target: str = None

    def __post_init__(self):
        if isinstance(self.labels, str):
            object.__setattr__(self, "labels", (self.labels,))
        if self.level not in LEVELS:
            raise ConfigError(f"task {self.name}: level {self.level!r} is not one of {LEVELS}")
        if self.metric not in ("accuracy", "macro_f1", "map"):
            raise ConfigError(f"task {self.name}: unknown metric {self.metric!r}")
        if self.level == "frame" and self.frame_target not in FRAME_TARGETS:
            raise ConfigError(f"task {self.name}: frame tasks need frame_target in {FRAME_TARGETS}")
        if self.level == "frame" and self.metric == "map":
            raise ConfigError(f"task {self.name}: frame tasks are single-label (accuracy or macro_f1)")

    @property
    def multi_label(self):
        return self.metric == "map"

    def splits(self):
        return {"train": self.train, "dev": self.dev, "test": self.test}

    def label_file(self, data_root):
        """The first of `labels` present in all three data dirs, or None (task skipped)."""
        for name in self.labels:
            if all(os.path.isfile(os.path.join(data_root, d, name)) for d in self.splits().values()):
                return name
        return None


# The demo corpus (usad2.data.demo): >= 3 speech, 2 general-audio, 3 music and frame-level tasks.
DEMO_SUITE = (
    Task("word", "speech", "utt2word"),
    Task("word_category", "speech", "utt2word_category"),
    Task("language", "speech", "utt2language"),
    # the demo corpus holds its test voices out (no leakage), so this one is skipped there
    Task("voice", "speech", ("utt2voice", "utt2spk_label")),
    Task("sound_class", "audio", "utt2sound_class"),
    Task("drum_class", "audio", ("utt2drum_class", "utt2drum", "utt2kit")),
    Task("instrument_family", "music", "utt2instrument_family"),
    Task("pitch_class", "music", "utt2pitch_class"),
    Task("chord_quality", "music", "utt2chord_quality"),
    Task("style", "music", "utt2style"),
    Task("note_activity", "music", "utt2notes", level="frame", metric="macro_f1",
         frame_target="activity"),
    Task("frame_pitch_class", "music", "utt2notes", level="frame", metric="macro_f1",
         frame_target="pitch_class"),
)
SUITES = {"demo": DEMO_SUITE}


def get_suite(name, train="train", dev="dev", test="test"):
    """The tasks of suite `name`, with their data dir names replaced by train/dev/test."""
    if name not in SUITES:
        raise ConfigError(f"unknown probe suite {name!r}; known: {', '.join(SUITES)}")
    return [dataclasses.replace(t, train=train, dev=dev, test=test) for t in SUITES[name]]


def available_tasks(tasks, data_root):
    """[(task, label file)] for the tasks whose labels exist; logs one line per skipped task."""
    found = []
    for task in tasks:
        label = task.label_file(data_root)
        if label is None:
            logger.info("task %s skipped: none of %s in all of %s under %s", task.name,
                        ", ".join(task.labels), ", ".join(task.splits().values()), data_root)
        else:
            found.append((task, label))
    return found


NOTES_HEADER = "onset\toffset\tpitch\tvelocity"
_PIECE = re.compile(r"(?P<clip>.+)-(?P<ms>\d{7})")


def read_notes(tokens, utt, where):
    """Note events [(start, end, midi pitch)] of one utterance's label tokens (table path or triples)."""
    if len(tokens) == 1:
        return _piece_shift(read_note_table(tokens[0]), tokens[0], utt)
    if len(tokens) % 3:
        raise DataDirError(f"{where}: utterance {utt}: expected a note table path or triples "
                           f"'start end pitch', got {len(tokens)} tokens")
    notes = []
    for i in range(0, len(tokens), 3):
        notes.append(_note(tokens[i:i + 3], f"{where}: utterance {utt}"))
    return [n for n in notes if n[1] > n[0]]


def _note(fields, where):
    try:
        start, end, pitch = float(fields[0]), float(fields[1]), int(fields[2])
    except (ValueError, IndexError):
        raise DataDirError(f"{where}: bad note {' '.join(fields)!r} (expected start end midi_pitch)") from None
    if not 0 <= start <= end or not 0 <= pitch <= 127:
        raise DataDirError(f"{where}: note {' '.join(fields)!r} needs 0 <= start <= end and a MIDI pitch 0..127")
    return start, end, pitch


def read_note_table(path):
    """[(onset, offset, pitch)] of a note table file; DataDirError names the file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise DataDirError(f"{path}: cannot read note table ({e.strerror})") from None
    if lines[0] != NOTES_HEADER:
        raise DataDirError(f"{path}:1: expected the header {NOTES_HEADER!r}")
    notes = [_note(line.split("\t")[:3], f"{path}:{number}")
             for number, line in enumerate(lines[1:], start=2) if line]
    return [n for n in notes if n[1] > n[0]]  # a note cut to nothing at the clip end sounds nowhere


def _piece_shift(notes, path, utt):
    """Notes relative to a stage-2 piece `<clip>-<ms>` when the table is the whole clip's."""
    m = _PIECE.fullmatch(utt)
    stem = os.path.splitext(os.path.basename(path))[0]
    if not m or stem != m["clip"]:
        return notes
    offset = int(m["ms"]) / 1000.0
    return [(s - offset, e - offset, p) for s, e, p in notes if e > offset]


def frame_labels(notes, times, target):
    """One label string per frame centre time in `times` (seconds), from note events."""
    labels = []
    for t in times:
        sounding = [p for s, e, p in notes if s <= t < e]
        if not sounding:
            labels.append(NO_NOTE)
        elif target == "activity":
            labels.append("note")
        else:
            labels.append(PITCH_CLASSES[min(sounding) % 12])
    return labels


def frame_times(num_frames, frame_rate, frame_offset):
    """Centre times (seconds) of frames 0..num_frames-1 of a model."""
    return frame_offset + np.arange(num_frames, dtype=np.float64) / float(frame_rate)
