"""Shared plumbing of the demo teachers: per-utterance extraction, padding, ONNX sessions.

Every demo teacher processes each utterance on its own valid samples only (the zero padding
of a batch never leaks into features, and some front ends normalise per input), then pads the
per-utterance frames back into (B, T, D) tensors.
"""
import abc
import math

import numpy as np
import torch

from usad2.errors import TeacherError
from usad2.teachers.base import Teacher
from usad2.teachers.registry import require_files


def ort_session(model, providers=("CPUExecutionProvider",)):
    """An onnxruntime session on one intra- and one inter-op thread (busy shared CPUs).

    `model` is a path or a serialized ModelProto (bytes).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own exception types
        where = model if isinstance(model, str) else "<in-memory model>"
        raise TeacherError(f"cannot load ONNX model {where}: {e}") from None


def expose_outputs(model, names):
    """Add existing intermediate tensors `names` as graph outputs (float, any shape)."""
    from onnx import TensorProto, helper

    produced = {o for n in model.graph.node for o in n.output}
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in produced:
            raise TeacherError(f"ONNX graph has no tensor {name!r}")
        if name not in present:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model


def num_windows(num_samples, hop):
    """Frames of a windowed teacher whose frame t is centred at t * hop: ceil(N / hop), >= 1."""
    return max(1, math.ceil(num_samples / hop))


def centre_pad(wav, left, total):
    """`wav` with `left` zeros before it and zeros after it up to `total` samples."""
    out = np.zeros(max(total, left + len(wav)), dtype=np.float32)
    out[left:left + len(wav)] = wav
    return out


def pad_batch(per_utt):
    """[[(T_b, D_l) arrays per layer] per utterance] -> ([(B, T, D_l) tensors], lengths (B,))."""
    lengths = torch.tensor([feats[0].shape[0] for feats in per_utt], dtype=torch.long)
    t_max = int(lengths.max()) if len(per_utt) else 0
    outputs = []
    for layer in range(len(per_utt[0]) if per_utt else 0):
        dim = per_utt[0][layer].shape[1]
        out = torch.zeros(len(per_utt), t_max, dim)
        for b, feats in enumerate(per_utt):
            out[b, :feats[layer].shape[0]] = torch.as_tensor(np.asarray(feats[layer]), dtype=torch.float32)
        outputs.append(out)
    return outputs, lengths


class DemoTeacher(Teacher):
    """A demo teacher: resolves its cached files, runs utterance by utterance on CPU."""

    def __init__(self, card, cache=None, device="cpu"):
        super().__init__(card)
        if str(device) != "cpu":
            raise TeacherError(f"teacher {card.name}: demo teachers run on CPU only, not {device}")
        self.files = require_files(card, cache)

    def _extract(self, wavs, lengths, layers):
        wavs = torch.as_tensor(wavs)
        if wavs.dim() != 2:
            raise TeacherError(f"teacher {self.name}: expected (B, N) waveforms, got shape {tuple(wavs.shape)}")
        per_utt = []
        for b in range(wavs.shape[0]):
            n = int(lengths[b])
            if n <= 0 or n > wavs.shape[1]:
                raise TeacherError(f"teacher {self.name}: utterance {b} has length {n} outside 1..{wavs.shape[1]}")
            wav = wavs[b, :n].detach().to("cpu", torch.float32).numpy()
            per_utt.append(self.extract_one(wav, layers))
        return pad_batch(per_utt)

    @abc.abstractmethod
    def extract_one(self, wav, layers):
        """One 16 kHz float32 utterance -> list of (T, D) arrays, one per requested layer."""
