"""Frame-level note ground truth of the demo music clips (for a note-activity / pitch probe).

Format of `notes/<utt>.tsv` (the data dirs point to it with `utt2notes`, a path relative to the
working directory like wav.scp's): UTF-8 text, a header line `onset<TAB>offset<TAB>pitch<TAB>
velocity`, then one line per note sorted by onset: onset and offset in seconds from the clip
start (3 decimals), the MIDI pitch (integer, 69 = A4 = 440 Hz) and the MIDI velocity. The
offset is the note-off time (the instrument's release may sound a little longer); notes are
cut at the clip end and notes that would have no length after rounding to milliseconds
(starting at or just before the clip end) are dropped, so every line has onset < offset.
Drum notes (MIDI channel 10) are not listed. A clip with no pitched note has only the header.
"""
import numpy as np

from usad2.errors import DataDirError
from usad2.utils.atomic import atomic_write_text

HEADER = "onset\toffset\tpitch\tvelocity"


def notes_text(notes, duration):
    """The TSV text of `notes` (midi.Note) cut to a clip of `duration` seconds."""
    lines = [HEADER]
    for note in sorted(notes, key=lambda n: (n.start, n.pitch)):
        onset, offset = f"{note.start:.3f}", f"{min(note.end, duration):.3f}"
        if float(onset) >= float(offset):  # starts at (or within 0.5 ms of) the clip end
            continue
        lines.append(f"{onset}\t{offset}\t{note.pitch}\t{note.velocity}")
    return "\n".join(lines) + "\n"


def write_notes(path, notes, duration):
    """Write the note table of one clip atomically."""
    atomic_write_text(path, notes_text(notes, duration))


def read_notes_table(path):
    """[(onset, offset, pitch, velocity)] of a note table; DataDirError names file and line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if not lines or lines[0] != HEADER:
        raise DataDirError(f"{path}:1: expected the header {HEADER!r}")
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        try:
            onset, offset, pitch, velocity = float(fields[0]), float(fields[1]), int(fields[2]), \
                int(fields[3])
        except (ValueError, IndexError) as e:
            raise DataDirError(f"{path}:{number}: bad note line {line!r} ({e})") from e
        if not 0 <= onset < offset or not 0 <= pitch <= 127:
            raise DataDirError(f"{path}:{number}: bad note times or pitch in {line!r}")
        rows.append((onset, offset, pitch, velocity))
    return rows


def piano_roll(rows, num_frames, frame_rate):
    """(num_frames, 128) 0/1 matrix: 1 where a pitch sounds in a frame (frame t covers
    [t, t+1) / frame_rate seconds)."""
    roll = np.zeros((num_frames, 128), dtype=np.uint8)
    for onset, offset, pitch, _ in rows:
        a = int(np.floor(onset * frame_rate))
        b = max(a + 1, int(np.ceil(offset * frame_rate)))
        roll[a:min(b, num_frames), pitch] = 1
    return roll
