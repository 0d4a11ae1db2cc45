"""Sample-rate conversion with the `sox` binary (usad2's resampler, docs/architecture.md#2-dependencies).

Why the binary and not pysox: pysox's `Transformer.rate()` is silently ignored when the output is a
numpy array (only `set_output_format(rate=...)` works), and its array path adds nothing over a
direct call. The binary is run with an argument list (never a shell string) on raw 32-bit float
mono samples through stdin/stdout, with sox's high-quality `rate -h` filter and no dither.

Sox works internally on 32-bit integers, so the output is clipped to [-1, 1] by construction.
"""
import subprocess

import numpy as np
import torch

from usad2.errors import AudioError

_RAW_F32 = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]


def _describe(name):
    return f"utterance {name!r}" if name is not None else "waveform"


def sox_resample_array(samples, orig_sr, new_sr, *, name=None):
    """Resample a 1-D float32 numpy array from `orig_sr` to `new_sr` Hz; returns float32 numpy.

    The output has round(len * new_sr / orig_sr) samples (sox's rate effect keeps the duration).
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"{_describe(name)}: resampling needs a 1-D waveform, got shape {samples.shape}")
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise AudioError(f"{_describe(name)}: invalid sample rates {orig_sr} -> {new_sr}")
    if orig_sr == new_sr or samples.size == 0:
        return samples.copy()
    cmd = (["sox", "-D", "-V1", *_RAW_F32, "-r", str(orig_sr), "-",
            *_RAW_F32, "-r", str(new_sr), "-", "rate", "-h"])
    proc = subprocess.run(cmd, input=samples.tobytes(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise AudioError(f"{_describe(name)}: sox could not resample {orig_sr} -> {new_sr} Hz: {err}")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def resample(wave, orig_sr, new_sr, *, name=None):
    """Resample a 1-D float waveform (torch tensor or numpy array) with sox; returns a float32 tensor."""
    if isinstance(wave, torch.Tensor):
        wave = wave.detach().to("cpu", torch.float32).numpy()
    return torch.from_numpy(sox_resample_array(wave, orig_sr, new_sr, name=name))
