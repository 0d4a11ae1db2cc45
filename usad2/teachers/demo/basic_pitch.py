"""Spotify's basic-pitch (ICASSP 2022) note transcription model, `nmp.onnx`, 22.05 kHz input.

Layers: 1 contour (264 bins, 3 per semitone), 2 note (88 piano keys, MIDI 21..108),
3 onset (88): the model's three sigmoid heads ("StatefulPartitionedCall:0/1/2", named as
basic-pitch's own inference does), at 22050 / 256 Hz.

Windowing: the model takes windows of 43844 samples (2 s - 256) and returns 172 centred CQT
frames. As basic-pitch does, the signal gets 15 * 256 zeros on the left and each window's
first and last 15 frames are dropped; unlike basic-pitch (whose 36164-sample hop is not a whole
number of frames, so its stitched frames drift), windows here advance by exactly 142 frames
(36352 samples) so the kept frames tile the time axis. Frame t is centred at t * 256 / 22050 s
(frame_offset 0); N samples at 22.05 kHz give ceil(N / 256) frames. The 16 kHz input is
resampled with torchaudio's windowed-sinc resampler.
"""
import numpy as np
import torch
import torchaudio

from usad2.teachers.base import register_family
from usad2.teachers.demo.common import DemoTeacher, centre_pad, num_windows, ort_session

INPUT_RATE = 16000
MODEL_RATE = 22050
FFT_HOP = 256
OUTPUT_NAMES = ("StatefulPartitionedCall:0", "StatefulPartitionedCall:1", "StatefulPartitionedCall:2")
LOWEST_MIDI = 21


@register_family("basic_pitch")
class BasicPitchTeacher(DemoTeacher):
    """basic-pitch teacher: contour / note / onset posteriorgrams, 22050/256 Hz."""

    def __init__(self, card, cache=None, device="cpu"):
        super().__init__(card, cache, device)
        self.window = int(card.options.get("window_samples", 43844))
        self.trim = int(card.options.get("trim_frames", 15))
        self.batch = int(card.options.get("batch_windows", 8))
        self.window_frames = 1 + self.window // FFT_HOP
        self.keep = self.window_frames - 2 * self.trim
        self.session = ort_session(self.files.get("nmp.onnx") or self.files.get("checkpoint"))
        self.input = self.session.get_inputs()[0].name

    def resample(self, wav):
        return torchaudio.functional.resample(torch.as_tensor(wav), INPUT_RATE, MODEL_RATE).numpy()

    def extract_one(self, wav, layers):
        audio = self.resample(wav)
        n_frames = num_windows(len(audio), FFT_HOP)
        n_win = -(-n_frames // self.keep)
        hop = self.keep * FFT_HOP
        padded = centre_pad(audio, self.trim * FFT_HOP, (n_win - 1) * hop + self.window)
        windows = np.stack([padded[w * hop:w * hop + self.window] for w in range(n_win)])[..., None]
        names = [OUTPUT_NAMES[layer - 1] for layer in layers]
        outs = [[] for _ in layers]
        for start in range(0, n_win, self.batch):
            for out, value in zip(outs, self.session.run(names, {self.input: windows[start:start + self.batch]})):
                out.append(value[:, self.trim:self.trim + self.keep].reshape(-1, value.shape[-1]))
        return [np.concatenate(o)[:n_frames] for o in outs]


def note_to_midi(index):
    """MIDI note number of note/onset bin `index` (bin 0 is A0 = MIDI 21)."""
    return LOWEST_MIDI + index
