"""Model FLOP utilisation of the usad2 `small` training step vs the GEMM peak of this run.

The step runs at distill's default precision (`auto`: bf16 autocast where the CPU has bf16
matrix instructions) and is compared with the GEMM peak at that precision; the fp32 step against
the fp32 peak is reported as INFO.

FLOPs of one step (forward + backward; the AdamW update is negligible and not counted) come
from `torch.utils.flop_counter.FlopCounterMode`, with two corrections:
- attention is counted under the MATH sdpa backend (same arithmetic, decomposed into bmm that
  the counter knows; the fused CPU kernel has no counter formula);
- torch 2.8's convolution_backward formula ignores `groups` in the weight gradient, which
  over-counts the grouped positional convolutions by 16x; a corrected formula replaces it.
Achieved rate = counted FLOPs / median step time (timed without the counter, default backend).
Peak = `torch.matmul` of two 2048 x 2048 matrices (fp32, or bf16 operands), same thread count: best of 3 calls
between every two timed steps, median over those (a shared machine's load then hits both alike).
"""
import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from bench.common import Result, best_of, interleaved
from bench.train_step import Usad2Step
from usad2.utils.precision import resolve_precision

GEMM_N = 2048


def _t(shape):
    return [shape[1], shape[0]] + list(shape[2:])


def conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                       transposed, _output_padding, groups, output_mask, out_shape=None, **kwargs):
    """torch's convolution_backward count with the weight gradient divided by `groups`."""
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, x_shape, not transposed)
    if output_mask[1]:
        if transposed:
            flops += conv_flop_count(_t(grad_out_shape), _t(x_shape), _t(w_shape), False) // groups
        else:
            flops += conv_flop_count(_t(x_shape), _t(grad_out_shape), _t(w_shape), False) // groups
    return flops


def count_step_flops(step):
    """FLOPs of one call of `step` (forward + backward), see the module docstring."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.convolution_backward: conv_backward_flop})  # FlopCounterMode wraps it
    with sdpa_kernel(SDPBackend.MATH), counter:
        step()
    return counter.get_total_flops()


def gemm_peak(repeats=5, dtype=torch.float32):
    """GEMM FLOP/s of this process at `dtype` (best of `repeats`)."""
    a, b = torch.randn(GEMM_N, GEMM_N, dtype=dtype), torch.randn(GEMM_N, GEMM_N, dtype=dtype)
    seconds = best_of(lambda: torch.matmul(a, b), repeats)
    return 2 * GEMM_N ** 3 / seconds


def mfu(precision, batch, seconds, repeats):
    """(FLOPs per step, median step seconds, median GEMM peak) of the `small` step at `precision`."""
    from usad2.models.presets import get_preset

    step = Usad2Step(get_preset("small"), batch, seconds, precision=precision)
    flops = count_step_flops(step)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peaks = []
    times = interleaved({"step": step, "gemm": lambda: peaks.append(gemm_peak(3, dtype))}, repeats)
    return flops, times["step"], statistics.median(peaks)  # peaks taken between steps: same load


def run(quick=False):
    batch, seconds, repeats = (2, 4.0, 2) if quick else (4, 10.0, 3)
    precision = resolve_precision("auto")
    shape = f"batch {batch} x {seconds:g} s, 1 thread"
    results = []
    for prec in dict.fromkeys([precision, "fp32"]):
        flops, step, peak = mfu(prec, batch, seconds, repeats)
        rate = flops / step
        results.append(Result(f"mfu small_train_step/gemm_peak {prec}", 100 * rate / peak,
                              40.0 if prec == precision else None, unit="%",
                              note=f"{flops / 1e9:.0f} GFLOP/step in {step:.2f} s = {rate / 1e9:.1f} GFLOP/s; "
                                   f"{prec} GEMM peak {peak / 1e9:.1f} GFLOP/s ({shape})"))
    return results
