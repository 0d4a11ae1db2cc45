"""Google's speech_embedding (keyword spotting) from openWakeWord's two ONNX files.

Pipeline (as openWakeWord runs it): int16-scaled 16 kHz audio -> melspectrogram.onnx (32 mel
bins, frames of 512 samples every 160) -> x / 10 + 2 -> embedding_model.onnx on windows of 76
mel frames taken every 8 frames (80 ms, 12.5 Hz) -> 96-d. Besides the embedding, three inner
blocks (max-pool outputs, exposed by adding them as graph outputs) are layers 1-3: each is
averaged over the window's time axis and flattened over channel x frequency.

Framing: the waveform gets 6256 zeros on the left, the centre of the first window (mel frame
37.5 -> 37.5 * 160 + 512 / 2 samples), so frame t is centred at t * 80 ms (frame_offset 0);
an utterance of N samples yields ceil(N / 1280) frames. The mel model clips at 80 dB below
the maximum of its whole input, so each utterance is processed alone.
"""
import numpy as np

from usad2.teachers.base import register_family
from usad2.teachers.demo.common import DemoTeacher, centre_pad, expose_outputs, num_windows, ort_session

MEL_HOP = 160
MEL_WINDOW = 512
INT16_SCALE = 32767.0
# graph tensor of each layer (NCHW: N, channels, time, frequency) and the final embedding
LAYER_TENSORS = ("model/max_pooling2d_1/MaxPool:0", "model/max_pooling2d_2/MaxPool:0",
                 "model/max_pooling2d_3/MaxPool:0", "conv2d_19")


def melspec_transform(spec):
    """openWakeWord's scaling of the mel model's output (its default `x / 10 + 2`)."""
    return spec / 10.0 + 2.0


@register_family("speech_embedding")
class SpeechEmbeddingTeacher(DemoTeacher):
    """speech_embedding teacher: 4 layers (3 inner blocks + the 96-d embedding), 12.5 Hz."""

    def __init__(self, card, cache=None, device="cpu"):
        import onnx

        super().__init__(card, cache, device)
        self.window = int(card.options.get("window_frames", 76))
        self.step = int(card.options.get("step_frames", 8))
        self.batch_windows = int(card.options.get("batch_windows", 64))
        self.mel = ort_session(self.files["melspectrogram.onnx"])
        model = expose_outputs(onnx.load(self.files["embedding_model.onnx"]), LAYER_TENSORS[:-1])
        self.embed = ort_session(model.SerializeToString())
        self.input_name = self.embed.get_inputs()[0].name

    @property
    def hop(self):
        return self.step * MEL_HOP

    @property
    def left_pad(self):
        return int((self.window - 1) / 2 * MEL_HOP + MEL_WINDOW / 2)

    def melspectrogram(self, wav):
        """(frames, 32) transformed log-mel of a float waveform in [-1, 1]."""
        x = (wav * INT16_SCALE).astype(np.float32)[None]
        spec = self.mel.run(None, {"input": x})[0]
        return melspec_transform(np.squeeze(spec, axis=(0, 1)))

    def extract_one(self, wav, layers):
        n = num_windows(len(wav), self.hop)
        total = (n - 1) * self.hop + (self.window - 1) * MEL_HOP + MEL_WINDOW
        mel = self.melspectrogram(centre_pad(wav, self.left_pad, total))
        windows = np.stack([mel[t * self.step:t * self.step + self.window] for t in range(n)])[..., None]
        outs = [[] for _ in layers]
        names = [LAYER_TENSORS[layer - 1] for layer in layers]
        for start in range(0, n, self.batch_windows):
            batch = windows[start:start + self.batch_windows].astype(np.float32)
            for out, value in zip(outs, self.embed.run(names, {self.input_name: batch})):
                out.append(value.mean(axis=2).reshape(len(batch), -1))  # (N, C, T, F) -> (N, C*F)
        return [np.concatenate(o) for o in outs]
