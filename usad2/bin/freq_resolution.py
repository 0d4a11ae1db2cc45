"""Frequency-resolution study (issue 7 item 5): the front end's row widths and the harmony probes.

    python -m usad2.bin.freq_resolution --out exp/freq                      # the table only
    python -m usad2.bin.freq_resolution --out exp/freq --data_root dump/raw \\
        --model fbank --model random_init=tiny --model random_f1=random:tiny_f1 \\
        --model student=exp/a/checkpoints/last.pt --model student_heads=heads:exp/a/checkpoints/last.pt \\
        --model basic_pitch --frontend random_init,random_f1,student

Writes <out>/freq_resolution.md and .json: the table of `usad2.probe.freq_resolution` (mel bin,
feature row at each conv frequency stride, FFT bin and window main lobe, in semitones at
100-1000 Hz), then the pitch / harmony tasks (--tasks) probed on every --model with the learned
layer weighting, and on the students named in --frontend with their frontend output only
(layer 0: fbank -> conv subsampler -> projection, before any transformer block). Comparing
fbank, the frontend at freq_stride 2 and 1, the student's layers, its prediction heads and the
teacher's layers says where the harmony information is lost: in the input resolution, the
encoder, or the distillation loss (heads that predict the teacher well but carry no chord).
"""
import json
import logging
import os
import sys

from usad2.errors import ConfigError
from usad2.probe.freq_resolution import render_table, resolution_table, semitone_floor
from usad2.utils.atomic import atomic_write_text
from usad2.utils.cli import make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging

logger = logging.getLogger("usad2.bin.freq_resolution")
DEFAULT_TASKS = "pitch_class,chord_quality,frame_pitch_class"


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
