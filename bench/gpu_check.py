"""Helpers of bench/gpu_check.sh: synthetic batches, a random-weight WavLM teacher, and reports.

Runs where nothing can be downloaded: the teacher is a full-size WavLM Base architecture with
random weights (`transformers.WavLMConfig()` defaults), saved with save_pretrained and loaded
through usad2's own hf_wavlm family, so the CUDA path is exactly the real teacher's.

The GPU image has its own torch but neither fairseq2 nor soundfile, so the data pipeline is
replaced by a synthetic stand-in with the same interface: importing this module through the
trainer's `--plugins bench.gpu_check` installs it. The real pipeline is CPU-side code, tested on
the CPU machines; this check is about the CUDA side (bf16, nccl, FSDP, teachers on the GPU).

    python bench/gpu_check.py prepare WORK      random WavLM checkpoint and its card in WORK/cards
    python bench/gpu_check.py extract WORK      time teacher extraction on CUDA
    python bench/gpu_check.py report EXP...     steps/s, audio s/s, losses, memory from metrics.jsonl
"""
import json
import os
import sys
import time

import numpy as np

SR = 16000


def require_cuda():
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device visible to torch (torch.cuda.is_available() is False); "
                 "run this on a GPU machine")
    return torch


class _Batch:
    """The fields of usad2.data.pipeline.Batch that the trainer reads."""

    def __init__(self, utts, wavs, lengths, domains):
        import torch

        self.utts, self.wavs, self.lengths, self.domains = utts, wavs, lengths, domains
        self.crop_starts = torch.zeros_like(lengths)
        self.full_lengths = lengths.clone()
        self.labels = {}

    def __len__(self):
        return len(self.utts)


def _synth_batch(step, n, seconds, seed, rank, world_size):
    """Global batch `step` of n clips (tones, noise, harmonic 'speech'), sliced for `rank`."""
    import torch

    rng = np.random.default_rng([seed, step])
    t = np.arange(int(seconds * SR)) / SR
    utts, waves, domains = [], [], []
    for i in range(n):
        domain = ("speech", "audio", "music")[(step + i) % 3]
        f0 = rng.uniform(80, 400)
        if domain == "audio":
            x = rng.standard_normal(len(t)) * (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0)
        else:
            x = sum(np.sin(2 * np.pi * h * f0 * t * (1 + 0.1 * np.sin(t))) / h for h in range(1, 8))
        utts.append(f"{domain}_{step}_{i}")
        waves.append(torch.from_numpy((0.5 * x / np.abs(x).max()).astype(np.float32)))
        domains.append(domain)
    keep = list(range(rank, n, world_size))
    wavs = torch.stack([waves[i] for i in keep])
    return _Batch([utts[i] for i in keep], wavs, torch.full((len(keep),), wavs.shape[1]), [domains[i] for i in keep])


class SyntheticTrainPipeline:
    """Stand-in for TrainPipeline on machines without fairseq2 / soundfile (the GPU image):
    endless synthetic batches of batch_seconds / crop_seconds clips, exact resume by step."""

    def __init__(self, data_dir, *, batch_seconds=80.0, crop_seconds=10.0, seed=0, rank=0, world_size=1, **_):
        self.n = max(world_size, int(batch_seconds // crop_seconds))
        self.seconds, self.seed, self.rank, self.world_size = crop_seconds, seed, rank, world_size
        self.step = 0

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = int(state["step"])

    def __iter__(self):
        while True:
            batch = _synth_batch(self.step, self.n, self.seconds, self.seed, self.rank, self.world_size)
            self.step += 1
            yield batch


class SyntheticEvalPipeline:
    """Two fixed synthetic dev batches."""

    def __init__(self, data_dir, *, batch_seconds, rank=0, world_size=1, **_):
        self.n, self.rank, self.world_size = max(world_size, int(batch_seconds // 4)), rank, world_size

    def __iter__(self):
        return iter([_synth_batch(10**6 + i, self.n, 4.0, 0, self.rank, self.world_size) for i in range(2)])


def install_pipeline_stand_in():
    """Make `usad2.data.pipeline` the synthetic stand-in (imported as a --plugins module)."""
    import types

    module = types.ModuleType("usad2.data.pipeline")
    module.TrainPipeline, module.EvalPipeline = SyntheticTrainPipeline, SyntheticEvalPipeline
    sys.modules["usad2.data.pipeline"] = module


def write_teacher(work):
    """A random WavLM Base checkpoint dir and a card `gpu_wavlm` pointing at it."""
    import torch
    import transformers
    import yaml

    ckpt = os.path.join(work, "wavlm_random")
    torch.manual_seed(0)
    transformers.WavLMModel(transformers.WavLMConfig()).save_pretrained(ckpt)
    cards = os.path.join(work, "cards")
    os.makedirs(cards, exist_ok=True)
    card = {"name": "gpu_wavlm", "family": "hf_wavlm", "domain": "speech", "sample_rate": SR,
            "frame_rate": 50, "frame_offset": 0.0125, "num_layers": 12, "width": 768,
            "source": {"path": ckpt}, "options": {"max_chunk_seconds": 30, "normalize": False}}
    with open(os.path.join(cards, "gpu_wavlm.yaml"), "w") as f:
        yaml.safe_dump(card, f)


def prepare(work):
    os.makedirs(work, exist_ok=True)
    write_teacher(work)
    print(f"prepared {work}: random WavLM Base teacher card gpu_wavlm")


def extract(work):
    """Teacher extraction on CUDA: ms of GPU time per second of audio, batch of 8 x 10 s."""
    torch = require_cuda()
    from usad2.teachers.registry import build_teacher

    teacher = build_teacher("gpu_wavlm", device="cuda", card_dirs=os.path.join(work, "cards"))
    wavs = torch.randn(8, 10 * SR) * 0.1
    lengths = torch.full((8,), 10 * SR)
    layers = [3, 6, 9, 12]
    outs, frames = teacher.extract(wavs, lengths, layers)  # warm-up
    torch.cuda.synchronize()
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        outs, frames = teacher.extract(wavs, lengths, layers)
        torch.cuda.synchronize()
        runs.append(time.perf_counter() - t0)
    best = min(runs)
    assert outs[0].shape == (8, int(frames.max()), 768), outs[0].shape
    assert all(torch.isfinite(o).all() for o in outs)
    print(f"teacher extraction (random WavLM Base, CUDA, 8 x 10 s, layers {layers}): best {best * 1000:.1f} ms "
          f"= {best * 1000 / 80:.2f} ms per audio second (RTF {best / 80:.5f}); {int(frames[0])} frames each, "
          f"on {torch.cuda.get_device_name(0)}")


def report(exp):
    with open(os.path.join(exp, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    if len(rows) < 3:
        sys.exit(f"gpu_check: {exp} logged only {len(rows)} steps")
    timed = rows[2:]  # first steps include CUDA / cuDNN warm-up
    span = timed[-1]["wall_time"] - timed[0]["wall_time"]
    steps = len(timed) - 1
    hours = timed[-1]["audio_hours"] - timed[0]["audio_hours"]
    first, last = rows[0]["loss"], rows[-1]["loss"]
    ok = all(np.isfinite(r["loss"]) for r in rows)
    print(f"{exp}: {len(rows)} steps, {steps / span:.2f} steps/s, {hours * 3600 / span:.1f} audio s/s, "
          f"loss {first:.4f} -> {last:.4f}, grad norm {rows[-1]['grad_norm']:.3g}, "
          f"peak GPU memory {max(r.get('gpu_max_mem_gb', 0) for r in rows):.2f} GB, "
          f"model FLOPs {rows[-1]['flops']:.3g}, dev {rows[-1].get('dev/loss', float('nan')):.4f}")
    if not ok or not last < first:
        sys.exit(f"gpu_check: {exp}: the loss did not decrease or was not finite ({first} -> {last})")


def main(argv):
    if len(argv) < 2 or argv[0] not in ("prepare", "extract", "report"):
        sys.exit(__doc__)
    cmd = argv[0]
    if cmd == "prepare":
        prepare(argv[1])
    elif cmd == "extract":
        extract(argv[1])
    else:
        for exp in argv[1:]:
            report(exp)


if __name__ == "__main__":
    main(sys.argv[1:])
else:
    install_pipeline_stand_in()
