"""Student inference vs the sum of its demo teachers, on the same 30 s of audio.

Teachers: the four demo teachers of the multidomain recipe (speech_embedding, resemblyzer,
yamnet, basic_pitch), built from the local cache (`python -m usad2.bin.fetch_teachers` first),
each extracting all of its layers (what offline target extraction does); onnxruntime runs on
one intra-op and one inter-op thread. Student: `Usad2Model` in eval / inference mode returning
every layer, fbank included. The target line uses the recipe's default student (`tiny`,
egs/TEMPLATE/usad2.sh `student=tiny`) and the demo recipe's (`mini`) on 30 s inputs, at the
default precision (`auto`: bf16 autocast on a CPU with bf16 matrix instructions; the fp32 time is
in the note); `small`, and `tiny` on 10 s inputs (the demo corpus's clips are short), are INFO.
"""
import torch

from bench.common import Result, interleaved
from usad2.utils.precision import autocast, resolve_precision

SR = 16000
TEACHERS = ("speech_embedding", "resemblyzer", "yamnet", "basic_pitch")


def teacher_runner(name, wave):
    from usad2.teachers.registry import build_teacher

    teacher = build_teacher(name)
    layers = list(range(1, teacher.num_layers + 1))
    return lambda: teacher.extract(wave.unsqueeze(0), [wave.shape[0]], layers)


def student_runner(preset, wave, precision="fp32"):
    from usad2.models.presets import get_preset
    from usad2.models.wave_encoder import Usad2Model

    torch.manual_seed(0)
    model = Usad2Model(get_preset(preset)).eval()

    def run():
        with torch.inference_mode(), autocast(precision):
            return model(wave.unsqueeze(0), torch.tensor([wave.shape[0]]))
    return run


def measure(seconds, repeats, presets, precision="fp32"):
    """({name: median seconds}) of every teacher and student preset on `seconds` of audio."""
    torch.manual_seed(0)
    wave = (0.1 * torch.randn(int(seconds * SR))).clamp(-1, 1)
    fns = {name: teacher_runner(name, wave) for name in TEACHERS}
    fns.update({f"student_{p}": student_runner(p, wave, precision) for p in presets})
    if precision != "fp32":
        fns.update({f"student_{p}_fp32": student_runner(p, wave) for p in presets})
    return interleaved(fns, repeats)


def run(quick=False):
    seconds, repeats = (10.0, 2) if quick else (30.0, 3)
    precision = resolve_precision("auto")
    times = measure(seconds, repeats, ("tiny", "mini", "small"), precision)
    teachers = sum(times[n] for n in TEACHERS)
    per_teacher = ", ".join(f"{n} {1000 * times[n] / seconds:.1f}" for n in TEACHERS)
    results = []
    for preset in ("tiny", "mini"):
        fp32 = times.get(f"student_{preset}_fp32")
        results.append(Result(
            f"inference student_{preset}/teachers ({precision})", teachers / times[f"student_{preset}"], 5.0,
            note=f"{1000 * times[f'student_{preset}'] / seconds:.1f} vs {1000 * teachers / seconds:.1f} ms per "
                 f"audio s ({seconds:g} s input, 1 thread)"
                 + (f"; fp32 {1000 * fp32 / seconds:.1f} ms per audio s" if fp32 else "")))
    results.append(Result(f"inference student_small/teachers ({precision})", teachers / times["student_small"],
                          note=f"{1000 * times['student_small'] / seconds:.1f} ms per audio s; teachers ms/s: "
                               f"{per_teacher}"))
    if not quick:  # the demo corpus's clips are short: the same comparison on 10 s inputs
        short = measure(10.0, repeats, ("tiny",), precision)
        ratio = sum(short[n] for n in TEACHERS) / short["student_tiny"]
        results.append(Result(f"inference student_tiny/teachers 10s ({precision})", ratio,
                              note=f"{100 * short['student_tiny']:.1f} ms per audio s on 10 s inputs"))
    return results
