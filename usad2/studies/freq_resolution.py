"""Frequency-resolution study (issue 7 item 5): the front end's row widths and the harmony probes.

    python -m usad2.studies.freq_resolution --out exp/freq                      # the table only
    python -m usad2.studies.freq_resolution --out exp/freq --data_root dump/raw \\
        --model fbank --model random_init=tiny --model random_f1=random:tiny_f1 \\
        --model student=exp/a/checkpoints/last.pt --model student_heads=heads:exp/a/checkpoints/last.pt \\
        --model basic_pitch --frontend random_init,random_f1,student

Writes <out>/freq_resolution.md and .json: the table of `resolution_table` below (mel bin,
feature row at each conv frequency stride, FFT bin and window main lobe, in semitones at
100-1000 Hz), then the pitch / harmony tasks (--tasks) probed on every --model with the learned
layer weighting, and on the students named in --frontend with their frontend output only
(layer 0: fbank -> conv subsampler -> projection, before any transformer block). Comparing
fbank, the frontend at freq_stride 2 and 1, the student's layers, its prediction heads and the
teacher's layers says where the harmony information is lost: in the input resolution, the
encoder, or the distillation loss (heads that predict the teacher well but carry no chord).

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
semitone wide; `study` runs the probes that measure the effect.
"""
import json
import logging
import math
import os
import sys

import numpy as np

from usad2.errors import ConfigError
from usad2.utils.atomic import atomic_write_text
from usad2.utils.cli import make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging

logger = logging.getLogger("usad2.studies.freq_resolution")
DEFAULT_TASKS = "pitch_class,chord_quality,frame_pitch_class"


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


def _names(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def study(out, data_root=None, models=(), frontend=(), tasks=DEFAULT_TASKS, num_bins=128, strides=(1, 2),
          probe_kwargs=None, feature_cache=""):
    """Write the table and (with `data_root` and `models`) the probe results; returns the JSON doc."""
    from usad2.bin.probe import probe

    rows = resolution_table(num_bins=num_bins, strides=strides)
    doc = {"num_mel_bins": num_bins, "table": rows,
           "semitone_floor_hz": {f"stride{s}": semitone_floor(num_bins, s) for s in strides}}
    kw = dict(probe_kwargs or {})
    cache = feature_cache or os.path.join(out, "features")
    front = [m for m in models if m.partition("=")[0] in set(frontend)]
    missing = set(frontend) - {m.partition("=")[0] for m in front}
    if missing:
        raise ConfigError(f"--frontend: {sorted(missing)} are not among the --model names")
    if data_root and models:
        doc["weighted"] = probe(list(models), data_root, os.path.join(out, "weighted"), tasks=tasks,
                                feature_cache=cache, **kw)
        if front:
            doc["frontend"] = probe(front, data_root, os.path.join(out, "frontend"), tasks=tasks, layer="0",
                                    feature_cache=cache, **kw)
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, "freq_resolution.json"), json.dumps(doc, indent=2, sort_keys=True) + "\n")
    atomic_write_text(os.path.join(out, "freq_resolution.md"), render(doc, strides))
    return doc


def render(doc, strides):
    floors = ", ".join(f"freq_stride {k[len('stride'):]}: {v:.0f} Hz" for k, v in doc["semitone_floor_hz"].items())
    lines = [f"# Frequency resolution ({doc['num_mel_bins']} mel bins, 16 kHz, 25 ms window, 512-point FFT)", "",
             "Width in semitones (st) of one mel bin and of one feature row after the conv subsampler's "
             "frequency stride, against the FFT bin and the Hann window's resolution.", "",
             render_table(doc["table"], strides), f"One row <= 1 semitone above: {floors}.", ""]
    for key, title in (("weighted", "learned layer weighting"), ("frontend", "frontend output only (layer 0)")):
        if key not in doc:
            continue
        tasks = sorted({t for e in doc[key].values() for t in e if not t.startswith("_")})
        lines += [f"## Probes: {title}", "", "| model | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
        for name, entry in doc[key].items():
            lines.append(f"| {name} | " + " | ".join(f"{entry[t]:.3f}" if t in entry else "-" for t in tasks) + " |")
        lines.append("")
    return "\n".join(lines)


def get_parser():
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--out", "--out_dir", dest="out", required=True, help="output folder")
    p.add_argument("--data_root", default=None, help="probe data root (train/dev/test); none: the table only")
    p.add_argument("--model", action="append", default=[], help="probe model spec (as usad2.bin.probe), repeatable")
    p.add_argument("--frontend", default="", help="student model names also probed on their frontend output")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="probe tasks")
    p.add_argument("--num_mel_bins", type=int, default=128, help="mel bins of the table")
    p.add_argument("--feature_cache", default="", help="shared feature cache (default <out>/features)")
    p.add_argument("--max_epochs", type=int, default=40, help="probe epochs")
    p.add_argument("--seed", type=int, default=0, help="probe seed")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    log_invocation(logger)
    import torch

    torch.set_num_threads(1)
    doc = study(args.out, args.data_root, args.model, _names(args.frontend), args.tasks, args.num_mel_bins,
                probe_kwargs={"max_epochs": args.max_epochs, "seed": args.seed}, feature_cache=args.feature_cache)
    sys.stdout.write(render(doc, (1, 2)))
    return 0


if __name__ == "__main__":
    run_main(main)
