"""Data pipeline throughput: data dir -> fbank batches, in audio seconds per CPU second.

Corpus: a generated data dir of 16 kHz PCM-16 WAV files, 2-20 s long, with utt2num_samples
(what the format stage writes). Both sides produce the same thing per batch: 10 s random crops
of 4 utterances, zero-padded into (B, N), then `usad2.audio.frontend.compute_fbank`.
- usad2: `usad2.data.pipeline.TrainPipeline` (fairseq2 prefetching decode, one worker), the
  fbank computed on each batch in the main thread.
- baseline: a plain `torch.utils.data.DataLoader` (num_workers 0) over a Dataset that reads the
  crop with soundfile (seek + read) and a padding collate function, same fbank.
Per core: throughput is audio seconds divided by the *process CPU time* (time.process_time,
all threads), so a background prefetch thread cannot make it look faster than one core can go;
wall-clock speed is given in the note. Real time = 1 audio second per second.
"""
import os
import tempfile
import time

import numpy as np
import soundfile as sf
import torch

from bench.common import Result

SR = 16000


def make_corpus(root, num_utts, seed=0):
    """A data dir of `num_utts` noise+tone WAVs, 2-20 s, with utt2num_samples; returns its path."""
    from usad2.data.datadir import DataDir

    rng = np.random.default_rng(seed)
    wav, num = {}, {}
    os.makedirs(os.path.join(root, "wav"), exist_ok=True)
    for i in range(num_utts):
        n = int(rng.uniform(2, 20) * SR)
        t = np.arange(n) / SR
        x = 0.1 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
        utt = f"utt{i:04d}"
        path = os.path.join(root, "wav", utt + ".wav")
        sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
        wav[utt], num[utt] = path, n
    data = os.path.join(root, "data")
    DataDir(wav, utt2num_samples=num, utt2domain={u: "audio" for u in wav}).write(data)
    return data, wav, num


class CropDataset(torch.utils.data.Dataset):
    """Baseline: one random crop of up to `crop` samples per item, read with soundfile."""

    def __init__(self, wav, num, crop, seed=0):
        self.items = sorted(wav.items())
        self.num, self.crop = num, crop
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        utt, path = self.items[i]
        length = min(self.crop, self.num[utt])
        start = int(self.rng.integers(0, self.num[utt] - length + 1))
        data, _ = sf.read(path, start=start, frames=length, dtype="float32")
        return torch.from_numpy(data)


def pad_collate(waves):
    lengths = torch.tensor([len(w) for w in waves])
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, :len(w)] = w
    return out, lengths


def _consume(batches, num_batches):
    """(audio seconds, CPU seconds, wall seconds) of turning `num_batches` batches into fbank."""
    from usad2.audio.frontend import compute_fbank

    audio = 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _, (wavs, lengths) in zip(range(num_batches), batches):
        feats, _ = compute_fbank(wavs, lengths)
        audio += float(lengths.sum()) / SR
    return audio, time.process_time() - cpu0, time.perf_counter() - wall0


def usad2_batches(data, crop_seconds, batch):
    from usad2.data.pipeline import TrainPipeline

    pipe = TrainPipeline(data, batch_seconds=batch * crop_seconds, crop_seconds=crop_seconds,
                         num_workers=1, seed=0)
    return ((b.wavs, b.lengths) for b in pipe)


def baseline_batches(wav, num, crop_seconds, batch):
    loader = torch.utils.data.DataLoader(CropDataset(wav, num, int(crop_seconds * SR)), batch_size=batch,
                                         shuffle=True, num_workers=0, collate_fn=pad_collate)
    while True:
        yield from loader


def run(quick=False):
    num_utts, num_batches = (24, 6) if quick else (120, 60)
    crop, batch = 10.0, 4
    with tempfile.TemporaryDirectory(prefix="usad2_bench_pipe_") as tmp:
        data, wav, num = make_corpus(tmp, num_utts)
        _consume(usad2_batches(data, crop, batch), 2)  # warm-up: imports, page cache
        ours = _consume(usad2_batches(data, crop, batch), num_batches)
        base = _consume(baseline_batches(wav, num, crop, batch), num_batches)
    speed = ours[0] / ours[1]
    base_speed = base[0] / base[1]
    return [
        Result("pipeline usad2/realtime per core", speed, 1000.0,
               note=f"{ours[0]:.0f} audio s in {ours[1]:.2f} CPU s ({ours[0] / ours[2]:.0f}x real time wall); "
                    f"fbank batches {batch} x {crop:g} s"),
        Result("pipeline usad2/torch DataLoader", speed / base_speed,
               note=f"baseline {base_speed:.0f}x real time per core ({base[0]:.0f} audio s in {base[1]:.2f} CPU s)"),
    ]
