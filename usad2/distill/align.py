"""Frame-rate alignment of student predictions and teacher targets (docs/method.md §3.4).

Rates are exact Fractions. With student rate r_s and teacher rate r_t:
- r_s = n·r_t (n integer > 1): mean-pool the student predictions by n (50 Hz student, 25 Hz ATST);
- r_t = n·r_s: mean-pool the teacher targets by n;
- equal rates: nothing;
- otherwise: resample the teacher targets in time to the student's frame centres by linear
  interpolation between the teacher frames' timestamps (frame t at offset + t / rate seconds).
Pooling groups consecutive frames; a last partial group averages its valid frames only. Both
sides are then cut to the shorter length; a length difference above `tolerance` student frames
is an error naming the teacher and utterance, never something silently hidden.

A teacher frame that is an average over a window of audio longer than its hop (YAMNet: one
0.975 s patch every 0.08 s) can instead be given its window's length, its `span`
(`--teacher_spans`, a usad2 option): the student's predictions are then averaged over the
student frames whose centres lie within each teacher frame's span, so the student may hold the
window's local features frame by frame, as the teacher does before it averages them, instead of
predicting the whole window's summary at every frame. A teacher frame counts where its window
holds at least half a span of valid student frames (or all of a shorter utterance).
"""
import fractions
import math

import torch

from usad2.errors import Usad2Error
from usad2.utils.cli import named_numbers


class AlignmentError(Usad2Error):
    """Student and teacher frame counts disagree beyond the tolerance."""


def parse_teacher_spans(text):
    """"yamnet=0.975" (or a {name: seconds} dict from YAML) -> {name: float}; None/"" -> {}."""
    if not text:
        return {}
    return named_numbers(text, "--teacher_spans", "NAME=SECONDS", "span", lambda x: math.isfinite(x) and x > 0,
                         "a positive number of seconds")


def format_teacher_spans(spans):
    """{name: seconds} -> the canonical "a=0.975" (names sorted), or None when empty."""
    return ",".join(f"{n}={spans[n]!r}" for n in sorted(spans)) or None


def _pool(x, lengths, n):
    """Mean-pool (B, T, D) by n over valid frames; returns (B, ceil(T/n), D), new lengths."""
    b, t, d = x.shape
    pad = (-t) % n
    mask = (torch.arange(t, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).to(x.dtype)
    x = torch.nn.functional.pad(x * mask.unsqueeze(-1), (0, 0, 0, pad))
    mask = torch.nn.functional.pad(mask, (0, pad))
    sums = x.view(b, -1, n, d).sum(2)
    counts = mask.view(b, -1, n).sum(2)
    pooled = sums / counts.clamp(min=1).unsqueeze(-1)
    return pooled, torch.div(lengths + n - 1, n, rounding_mode="floor")


def _interpolate(target, lengths, src_rate, src_offset, dst_rate, dst_offset, num_out):
    """Sample (B, T, D) teacher frames at the student frame times by linear interpolation."""
    t_out = torch.arange(num_out, dtype=torch.float64, device=target.device)
    times = float(dst_offset) + t_out / float(dst_rate)
    pos = (times - float(src_offset)) * float(src_rate)  # fractional teacher frame index
    out, new_lengths = [], []
    for i in range(target.shape[0]):
        n = int(lengths[i])
        p = pos.clamp(0, max(n - 1, 0))
        lo = p.floor().long()
        hi = (lo + 1).clamp(max=max(n - 1, 0))
        frac = (p - lo.to(p.dtype)).to(target.dtype).unsqueeze(-1)
        out.append(target[i, lo] * (1 - frac) + target[i, hi] * frac)
        # student frames whose time lies within the teacher's covered span (+ half a frame)
        last_time = float(src_offset) + (n - 0.5) / float(src_rate)
        new_lengths.append(int((times <= last_time + 1e-9).sum()))
    return torch.stack(out), torch.tensor(new_lengths, device=target.device)


def _span_pool(pred, lengths, s_rate, s_offset, t_rate, t_offset, span, num_out):
    """Mean of the student frames (B, Ts, D) whose centres lie within each of `num_out` teacher
    frames' spans -> (B, num_out, D), and (B, num_out) True where a window counts (module docstring)."""
    b, t, d = pred.shape
    centres = float(t_offset) + torch.arange(num_out, dtype=torch.float64, device=pred.device) / float(t_rate)
    first = torch.ceil((centres - span / 2 - float(s_offset)) * float(s_rate) - 1e-9).long()
    stop = torch.floor((centres + span / 2 - float(s_offset)) * float(s_rate) + 1e-9).long() + 1
    n = lengths.long().unsqueeze(1)  # (B, 1)
    first = torch.minimum(first.clamp(min=0).unsqueeze(0), n)  # (B, num_out)
    stop = torch.minimum(stop.clamp(min=0).unsqueeze(0), n)
    counts = stop - first
    valid = torch.arange(t, device=pred.device).unsqueeze(0) < lengths.unsqueeze(1)
    sums = torch.nn.functional.pad(torch.cumsum(pred * valid.unsqueeze(-1).to(pred.dtype), 1), (0, 0, 1, 0))
    window = (torch.gather(sums, 1, stop.unsqueeze(-1).expand(-1, -1, d))
              - torch.gather(sums, 1, first.unsqueeze(-1).expand(-1, -1, d)))
    pooled = window / counts.clamp(min=1).unsqueeze(-1).to(pred.dtype)
    half = math.ceil(span * float(s_rate) / 2 - 1e-9)
    return pooled, (counts >= torch.minimum(n, torch.full_like(n, half))) & (counts > 0)


def _align_spans(pred, pred_lengths, target, target_lengths, rs, rt, student_offset, teacher_offset,
                 span, tolerance, name, utts):
    """`align` for a teacher whose frames are averages over `span` seconds (module docstring)."""
    ratio = rt / rs  # teacher frames per student frame
    expected = (pred_lengths * ratio.numerator + ratio.denominator - 1) // ratio.denominator
    tol = max(1, math.ceil(tolerance * ratio))
    _check_lengths(expected, target_lengths, tol, name, utts, "teacher frames expected from the student's")
    pooled, counted = _span_pool(pred, pred_lengths, rs, student_offset, rt, teacher_offset, span,
                                 target.shape[1])
    mask = counted & (torch.arange(target.shape[1], device=target.device).unsqueeze(0) < target_lengths.unsqueeze(1))
    return pooled, target, mask.sum(1), mask


def _check_lengths(pred_lengths, target_lengths, tol, name, utts, counted="student frames"):
    """AlignmentError naming the utterance whose frame counts differ most, if beyond `tol`;
    `counted` says what `pred_lengths` counts."""
    diff = (pred_lengths - target_lengths).abs()
    if bool((diff > tol).any()):
        i = int(diff.argmax())
        who = utts[i] if utts is not None else f"batch item {i}"
        raise AlignmentError(
            f"{name}: utterance {who}: {int(pred_lengths[i])} {counted} vs "
            f"{int(target_lengths[i])} teacher frames after alignment (tolerance {tol})")


def align(pred, pred_lengths, target, target_lengths, student_rate, teacher_rate,
          student_offset=0.0, teacher_offset=0.0, tolerance=2, name="teacher", utts=None, span=None):
    """Bring student predictions (B, Ts, D) and teacher targets (B, Tt, D) to one time axis.

    Returns (pred, target, lengths, mask), both cut to the same T, mask (B, T) of valid frames.
    `tolerance` is in student frames (at the student's rate, before pooling). `span`: seconds of
    audio each teacher frame averages, or None (module docstring).
    """
    rs, rt = fractions.Fraction(student_rate), fractions.Fraction(teacher_rate)
    pred_lengths = torch.as_tensor(pred_lengths, device=pred.device)
    target_lengths = torch.as_tensor(target_lengths, device=target.device)
    if span is not None:
        return _align_spans(pred, pred_lengths, target, target_lengths, rs, rt, student_offset,
                            teacher_offset, float(span), tolerance, name, utts)
    tol = tolerance
    if rs != rt and (rs / rt).denominator == 1:
        n = int(rs / rt)
        pred, pred_lengths = _pool(pred, pred_lengths, n)
        tol = max(1, -(-tolerance // n))  # the tolerance shrinks with the pooled rate
    elif rs != rt and (rt / rs).denominator == 1:
        target, target_lengths = _pool(target, target_lengths, int(rt / rs))
    elif rs != rt:
        target, target_lengths = _interpolate(target, target_lengths, rt, teacher_offset, rs,
                                              student_offset, pred.shape[1])
    _check_lengths(pred_lengths, target_lengths, tol, name, utts)
    lengths = torch.minimum(pred_lengths, target_lengths)
    t = int(lengths.max()) if lengths.numel() else 0
    pred, target = pred[:, :t], target[:, :t]
    mask = torch.arange(t, device=pred.device).unsqueeze(0) < lengths.unsqueeze(1)
    return pred, target, lengths, mask
