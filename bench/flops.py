"""Model FLOP utilisation of the usad2 `small` training step vs the fp32 GEMM peak of this run.

FLOPs of one step (forward + backward; the AdamW update is negligible and not counted) come
from `torch.utils.flop_counter.FlopCounterMode`, with two corrections:
- attention is counted under the MATH sdpa backend (same arithmetic, decomposed into bmm that
  the counter knows; the fused CPU kernel has no counter formula);
- torch 2.8's convolution_backward formula ignores `groups` in the weight gradient, which
  over-counts the grouped positional convolutions by 16x; a corrected formula replaces it.
Achieved rate = counted FLOPs / median step time (timed without the counter, default backend).
Peak = fp32 `torch.matmul` of two 2048 x 2048 matrices, same thread count: best of 3 calls
between every two timed steps, median over those (a shared machine's load then hits both alike).
"""
import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from bench.common import Result, best_of, interleaved
from bench.train_step import Usad2Step

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


def gemm_peak(repeats=5):
    """fp32 GEMM FLOP/s of this process (best of `repeats`)."""
    a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    seconds = best_of(lambda: torch.matmul(a, b), repeats)
    return 2 * GEMM_N ** 3 / seconds


def run(quick=False):
    from usad2.models.presets import get_preset

    batch, seconds, repeats = (2, 4.0, 2) if quick else (4, 10.0, 3)
    step = Usad2Step(get_preset("small"), batch, seconds)
    flops = count_step_flops(step)
    peaks = []
    times = interleaved({"step": step, "gemm": lambda: peaks.append(gemm_peak(3))}, repeats)
    peak = statistics.median(peaks)  # each a best-of-3 taken between steps: same load as the steps
    rate = flops / times["step"]
    return [Result("mfu small_train_step/gemm_peak", 100 * rate / peak, 40.0, unit="%",
                   note=f"{flops / 1e9:.0f} GFLOP/step in {times['step']:.2f} s = {rate / 1e9:.1f} GFLOP/s; "
                        f"fp32 GEMM peak {peak / 1e9:.1f} GFLOP/s (batch {batch} x {seconds:g} s, 1 thread)")]
