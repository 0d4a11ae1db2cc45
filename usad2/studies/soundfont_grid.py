"""Which notes of the demo's note ranges a SoundFont renders silent.

    python -m usad2.studies.soundfont_grid /usr/share/sounds/sf2/TimGM6mb.sf2 [FONT...]

Renders every program (0-119) at every pitch of its family's range (music.PITCH_RANGE), one
short note per half-second slot in one fluidsynth run, and prints per SoundFont how many notes
stay silent (the slot's peak below the demo's silence floor) and which of them the demo's note
planner can draw (inside music.PROGRAM_RANGE / PITCH_RANGE and at most music.FONT_PITCH_CEILING).

Why: a note a SoundFont does not sound makes `prepare_demo` fail on a silent clip. A grid like
this one found PROGRAM_RANGE; this one found FONT_PITCH_CEILING, and it is the check to run before
another SoundFont renders demo music.
"""
import os
import tempfile

import numpy as np

from usad2.data.demo import midi, music
from usad2.data.demo.common import RMS_FLOOR, SAMPLE_RATE
from usad2.utils.cli import make_parser, run_main

SLOT = 0.5  # s per note: 0.25 s held, then release


def grid():
    """Every (program, pitch) of the families' ranges, in render order."""
    ranges = [music.PITCH_RANGE[music.FAMILIES[program // 8]] for program in range(15 * 8)]
    return [(program, pitch) for program, (low, high) in enumerate(ranges) for pitch in range(low, high + 1)]


def silent_notes(font):
    """The (program, pitch) pairs of grid() whose slot's peak stays below RMS_FLOOR in `font`."""
    notes, events = grid(), []
    for k, (program, pitch) in enumerate(notes):
        events.append(midi.program_change(k * SLOT, 0, program))
        events += midi.note_events(midi.Note(pitch, k * SLOT + 0.01, k * SLOT + 0.25, 100))
    with tempfile.TemporaryDirectory(prefix="usad2_grid_") as tmp:
        path = os.path.join(tmp, "grid.mid")
        with open(path, "wb") as f:
            f.write(midi.midi_bytes(events, end_time=len(notes) * SLOT))
        wave = music.fluidsynth(path, font, os.path.join(tmp, "grid.wav"), effects=False)
    n = int(SLOT * SAMPLE_RATE)
    return [note for k, note in enumerate(notes) if np.abs(wave[k * n:(k + 1) * n]).max(initial=0.0) < RMS_FLOOR]


def drawable(font, program, pitch):
    """Whether the demo's note planner can draw `pitch` for `program` when rendering with `font`."""
    low, high = music.program_range(program)
    return low <= pitch <= min(high, music.pitch_ceiling(font, program))


def main(argv=None):
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("fonts", nargs="+", help="SoundFont files (.sf2 or .sf3)")
    args = p.parse_args(argv)
    for font in args.fonts:
        silent = silent_notes(font)
        drawn = [note for note in silent if drawable(font, *note)]
        print(f"{os.path.basename(font)}: {len(silent)} of {len(grid())} notes silent; "
              f"the demo can draw {len(drawn)} of them: {drawn}", flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
