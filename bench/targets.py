"""Offline teacher targets: storage vs float32 .npy, and read speed vs recomputing them.

A real demo teacher (yamnet, all 3 layers, hop 0.08 s; and basic_pitch, whose 86 Hz outputs
are the largest of the demo set) is run by `usad2.bin.extract_teacher` over a generated data
dir (12 utterances of 5 s). Bytes = the ark files of the targets dir vs the same matrices saved
as float32 .npy (`usad2.targets.store.npy_bytes`). Read speed = time for `TargetsReader.get` of
every utterance vs the time to recompute them (load audio + teacher.extract), same layers.
"""
import glob
import os
import tempfile
import time

import numpy as np
import soundfile as sf

from bench.common import Result

SR = 16000
TEACHER = "basic_pitch"


def make_data(root, num_utts, seconds):
    from usad2.data.datadir import DataDir

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "wav"))
    wav = {}
    for i in range(num_utts):
        t = np.arange(int(seconds * SR)) / SR
        x = 0.3 * np.sin(2 * np.pi * 220 * 2 ** (i / 12) * t) + 0.05 * rng.standard_normal(t.size)
        path = os.path.join(root, "wav", f"u{i:03d}.wav")
        sf.write(path, x.astype(np.float32), SR)
        wav[f"u{i:03d}"] = path
    DataDir(wav, utt2domain={u: "music" for u in wav}).write(os.path.join(root, "data"))
    return os.path.join(root, "data"), wav


def run(quick=False):
    from usad2.audio.io import load_audio
    from usad2.bin.extract_teacher import extract_teacher
    from usad2.targets.store import TargetsReader, npy_bytes
    from usad2.teachers.registry import build_teacher

    num_utts, seconds = (4, 3.0) if quick else (12, 5.0)
    with tempfile.TemporaryDirectory(prefix="usad2_bench_targets_") as tmp:
        data, wav = make_data(tmp, num_utts, seconds)
        out = os.path.join(tmp, "targets")
        extract_teacher(data, TEACHER, out, progress=False)
        reader = TargetsReader(out)
        ark_bytes = sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, "shards", "*", "*.ark")))
        utts = reader.utterances()
        layers = reader.layers
        npy = sum(npy_bytes(a) for u in utts for a in reader.get(u))
        teacher = build_teacher(TEACHER)

        def read_all():
            return [reader.get(u) for u in utts]

        def recompute_all():
            out = []
            for u in utts:
                w = load_audio(wav[u], name=u)
                out.append(teacher.extract(w.unsqueeze(0), [w.shape[0]], layers))
            return out

        read_all(), recompute_all()  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            read_all()
        t_read = (time.perf_counter() - t0) / 3
        t0 = time.perf_counter()
        recompute_all()
        t_comp = time.perf_counter() - t0
    return [
        Result("targets bytes/float32 npy", ark_bytes / npy, 0.55, op="<=",
               note=f"{ark_bytes / 1e6:.2f} MB ark (float16) vs {npy / 1e6:.2f} MB .npy; {TEACHER} layers {layers}"),
        Result("targets read/recompute speed-up", t_comp / t_read, 5.0,
               note=f"read {1000 * t_read / num_utts:.2f} ms vs recompute {1000 * t_comp / num_utts:.1f} ms "
                    f"per {seconds:g} s utterance"),
    ]
