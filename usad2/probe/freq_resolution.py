"""Frequency resolution of the student's front end: how many semitones one feature row spans.

Issue 7 item 5: a distilled student kept basic-pitch's instrument knowledge but lost its harmony
(chord quality at chance). Pitch and harmony need neighbouring semitones to land in different
feature rows. Three things set the row width of the student's input at frequency f:

- the Kaldi mel filterbank: `num_mel_bins` triangles with centres equally spaced on the mel
  scale m(f) = 1127 ln(1 + f / 700) between low_freq and high_freq (Nyquist when 0); the spacing
  of neighbouring centres is the bin width;
- the FFT under it: a 512-point (padded) FFT at 16 kHz has 31.25 Hz bins, and the 25 ms (400
  sample) Hanning window has a main lobe 4 fs / N = 160 Hz wide, so two tones closer than about
  half of that (2 fs / N = 80 Hz) merge into one peak: at low frequencies this, not the mel
  spacing, is the floor (80 Hz is 5 semitones at 250 Hz);
- the conv subsampler: its frequency stride s keeps every s-th row, so a row spans s mel bins.

`resolution_table` computes these at chosen frequencies, in Hz and in semitones
(12 log2((f + df) / f)); `semitone_floor` is the lowest frequency where one row is at most one
semitone wide. The probes that measure the effect are run by `usad2.bin.freq_resolution`.
"""
import math

import numpy as np


def mel(f):
    """Kaldi's mel scale of frequency f (Hz)."""
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def inverse_mel(m):
    return 700.0 * np.expm1(np.asarray(m, dtype=np.float64) / 1127.0)


def mel_centres(num_bins=128, low_freq=20.0, high_freq=0.0, sample_rate=16000):
    """Centre frequencies (Hz) of Kaldi's `num_bins` triangular mel filters."""
    high = high_freq if high_freq > 0 else sample_rate / 2 + high_freq
    edges = np.linspace(mel(low_freq), mel(high), num_bins + 2)
    return inverse_mel(edges[1:-1])


def semitones(f, df):
    """Width of the band [f, f + df] in semitones."""
    return 12.0 * np.log2((np.asarray(f, dtype=np.float64) + df) / f)


def bin_width_hz(f, num_bins=128, low_freq=20.0, high_freq=0.0, sample_rate=16000):
    """Spacing (Hz) of neighbouring mel centres at frequency f (derivative of the mel map)."""
    high = high_freq if high_freq > 0 else sample_rate / 2 + high_freq
    dm = (mel(high) - mel(low_freq)) / (num_bins + 1)
    return dm * (700.0 + np.asarray(f, dtype=np.float64)) / 1127.0


def resolution_table(freqs=(100, 250, 500, 1000), num_bins=128, strides=(1, 2), sample_rate=16000,
                     window_samples=400, fft_size=512, low_freq=20.0, high_freq=0.0):
    """Rows {f, semitone_hz, mel_hz, mel_st, row_st[s] per stride, fft_st, window_st} at each f."""
    rows = []
    for f in freqs:
        width = float(bin_width_hz(f, num_bins, low_freq, high_freq, sample_rate))
        row = {"freq_hz": float(f), "semitone_hz": float(f * (2 ** (1 / 12) - 1)), "mel_bin_hz": width,
               "mel_bin_semitones": float(semitones(f, width)),
               "fft_bin_semitones": float(semitones(f, sample_rate / fft_size)),
               # Hanning main lobe: 4 / N wide, i.e. tones closer than ~2 / N (in Hz: 2 fs / N) merge
               "window_semitones": float(semitones(f, 2.0 * sample_rate / window_samples))}
        for s in strides:
            row[f"row_semitones_stride{s}"] = float(semitones(f, s * width))
        rows.append(row)
    return rows


def semitone_floor(num_bins=128, stride=1, low_freq=20.0, high_freq=0.0, sample_rate=16000):
    """Lowest frequency (Hz) above which one feature row (stride x mel bin) is <= 1 semitone."""
    high = high_freq if high_freq > 0 else sample_rate / 2 + high_freq
    dm = (mel(high) - mel(low_freq)) / (num_bins + 1)
    # s * dm * (700 + f) / 1127 = f (2^(1/12) - 1)  ->  f = 700 a / (r - a), a = s dm / 1127
    a, r = stride * dm / 1127.0, 2 ** (1 / 12) - 1
    return math.inf if a >= r else 700.0 * a / (r - a)


def render_table(rows, strides=(1, 2)):
    """Markdown of `resolution_table` rows."""
    head = ("| f (Hz) | 1 semitone (Hz) | mel bin (Hz) | " + " | ".join(f"row, stride {s} (st)" for s in strides)
            + " | FFT bin (st) | Hann main lobe half-width (st) |")
    lines = [head, "|" + "---|" * (5 + len(strides))]
    for r in rows:
        cells = [f"{r['freq_hz']:.0f}", f"{r['semitone_hz']:.1f}", f"{r['mel_bin_hz']:.1f}"]
        cells += [f"{r[f'row_semitones_stride{s}']:.2f}" for s in strides]
        cells += [f"{r['fft_bin_semitones']:.2f}", f"{r['window_semitones']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
