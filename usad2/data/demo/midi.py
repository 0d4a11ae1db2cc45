"""A tiny Standard MIDI File writer and note reader (no dependency beyond the standard library).

The demo corpus renders music with fluidsynth from MIDI it writes itself (notes, chords) and
from MIDI that MMA writes (grooves). Writing: one track (format 0) whose tempo is fixed so that
one tick is one millisecond (division 1000 ticks per quarter note, tempo 1 000 000 us per
quarter), so event times in seconds map exactly to ticks. Reading (`read_notes`): formats 0 and
1, any division and tempo changes, enough to turn a rendered file's notes into the frame-level
ground truth (onset, offset, pitch) of `usad2.data.demo.notes`.
"""
import dataclasses
import struct

from usad2.errors import AudioError

TICKS_PER_SECOND = 1000
_TEMPO_US = 1_000_000  # microseconds per quarter note: with division 1000, 1 tick = 1 ms


@dataclasses.dataclass(frozen=True)
class Note:
    """One note: MIDI pitch (0-127), start and end in seconds, velocity, channel (0-15)."""

    pitch: int
    start: float
    end: float
    velocity: int = 100
    channel: int = 0


def _varlen(value):
    """MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(out))


def note_events(note):
    """The (time, message bytes) note-on and note-off events of `note`."""
    if not (0 <= note.pitch <= 127 and 1 <= note.velocity <= 127 and 0 <= note.channel <= 15):
        raise ValueError(f"note out of MIDI range: {note}")
    if note.end <= note.start or note.start < 0:
        raise ValueError(f"note must start at >= 0 s and end after it starts: {note}")
    return [(note.start, bytes([0x90 | note.channel, note.pitch, note.velocity])),
            (note.end, bytes([0x80 | note.channel, note.pitch, 0]))]


def program_change(time, channel, program):
    """Event selecting General MIDI `program` (0-127) on `channel`."""
    return (time, bytes([0xC0 | channel, program]))


def control_change(time, channel, controller, value=0):
    """Control change event (e.g. 120 all sound off, 121 reset controllers, 123 all notes off)."""
    return (time, bytes([0xB0 | channel, controller, value]))


def midi_bytes(events, end_time=None):
    """A format-0 Standard MIDI File holding `events` [(seconds, message bytes)], sorted stably.

    At equal times the given order is kept, except that note-offs go before note-ons so a
    repeated pitch is released before it is struck again. `end_time` places end-of-track.
    """
    def order(item):
        index, (time, msg) = item
        return (round(time * TICKS_PER_SECOND), 0 if msg[0] & 0xF0 == 0x80 else 1, index)

    track = bytearray(b"\x00\xff\x51\x03" + _TEMPO_US.to_bytes(3, "big"))
    now = 0
    for _, (time, msg) in sorted(enumerate(events), key=order):
        tick = round(time * TICKS_PER_SECOND)
        track += _varlen(tick - now) + msg
        now = tick
    last = max(now, round((end_time or 0) * TICKS_PER_SECOND))
    track += _varlen(last - now) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_SECOND)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def notes_midi(notes, program=0, end_time=None):
    """A MIDI file playing `notes` with General MIDI `program` on every channel they use."""
    channels = sorted({n.channel for n in notes})
    events = [program_change(0.0, c, program) for c in channels]
    for note in notes:
        events += note_events(note)
    return midi_bytes(events, end_time)


# ------------------------------------------------------------------------------------- reading


def _read_varlen(data, pos):
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def _track_events(data, pos, end):
    """Yield (tick, status, data bytes) of one track; meta events as (tick, 0xFF, type, bytes)."""
    tick, status = 0, None
    while pos < end:
        delta, pos = _read_varlen(data, pos)
        tick += delta
        byte = data[pos]
        if byte == 0xFF:
            kind = data[pos + 1]
            length, pos = _read_varlen(data, pos + 2)
            yield tick, 0xFF, kind, data[pos:pos + length]
            pos += length
            continue
        if byte in (0xF0, 0xF7):
            length, pos = _read_varlen(data, pos + 1)
            pos += length
            continue
        if byte & 0x80:
            status, pos = byte, pos + 1
        if status is None:
            raise ValueError("running status without a status byte")
        size = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
        yield tick, status, None, data[pos:pos + size]
        pos += size


def _chunks(data):
    pos = 0
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        yield kind, pos + 8, pos + 8 + size
        pos += 8 + size


def _seconds(tempo_map, division, tick):
    """Seconds at `tick` given [(tick, us per quarter)] sorted tempo changes."""
    seconds, last_tick, tempo = 0.0, 0, 500_000
    for change_tick, change_tempo in tempo_map:
        if change_tick >= tick:
            break
        seconds += (change_tick - last_tick) * tempo / 1e6 / division
        last_tick, tempo = change_tick, change_tempo
    return seconds + (tick - last_tick) * tempo / 1e6 / division


def read_notes(path, skip_channels=(9,)):
    """The notes of a Standard MIDI File as sorted `Note`s (seconds), drum channel skipped.

    Raises AudioError naming the file when it is not a readable SMF.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _parse_notes(data, set(skip_channels))
    except (ValueError, IndexError, struct.error) as e:
        raise AudioError(f"{path}: not a readable Standard MIDI File ({e})") from e


def _parse_notes(data, skip):
    chunks = list(_chunks(data))
    if not chunks or chunks[0][0] != b"MThd":
        raise ValueError("no MThd header")
    _, start, _ = chunks[0]
    division = struct.unpack(">H", data[start + 4:start + 6])[0]
    if division & 0x8000:
        raise ValueError("SMPTE time division is not supported")
    events = [ev for kind, s, e in chunks[1:] if kind == b"MTrk"
              for ev in _track_events(data, s, e)]
    tempo_map = sorted((t, int.from_bytes(b, "big")) for t, st, kind, b in events
                       if st == 0xFF and kind == 0x51)
    notes, open_notes = [], {}
    for tick, status, _, payload in sorted((e for e in events if e[1] != 0xFF), key=lambda e: e[0]):
        kind, channel = status & 0xF0, status & 0x0F
        if kind not in (0x80, 0x90) or channel in skip:
            continue
        key = (channel, payload[0])
        if kind == 0x90 and payload[1] > 0:
            open_notes.setdefault(key, []).append((tick, payload[1]))
        elif open_notes.get(key):
            on_tick, velocity = open_notes[key].pop(0)
            if tick > on_tick:
                notes.append(Note(payload[0], _seconds(tempo_map, division, on_tick),
                                  _seconds(tempo_map, division, tick), velocity, channel))
    return sorted(notes, key=lambda n: (n.start, n.pitch, n.end))
