"""Soft domain weights in the distillation loss and the data pipeline (issue 16).

One-hot posteriors must give exactly the loss of hard labels (so labelled results are
unchanged), and since the loss is linear in the weights, a batch whose utterances all carry the
posterior p has the loss Σ_d p(d) × (loss of the batch labelled d).
"""
import dataclasses
import fractions

import numpy as np
import pytest
import soundfile
import torch

from usad2.data.datadir import DataDir
from usad2.data.pipeline import EvalPipeline, TrainPipeline
from usad2.distill.task import DistillTask, TeacherSpec

RATE = fractions.Fraction(50)


@dataclasses.dataclass
class _Batch:
    utts: list
    domains: list


def _task():
    specs = [TeacherSpec("sp", "speech", RATE, 0.0, [(2, 1), (4, 2)], {1: 6, 2: 6}),
             TeacherSpec("au", "audio", RATE, 0.0, [(4, 1)], {1: 5}),
             TeacherSpec("mu", "music", RATE, 0.0, [(4, 3)], {3: 4}),
             TeacherSpec("any", "any", RATE, 0.0, [(4, 1)], {1: 3})]
    return DistillTask(specs, RATE, omega=10.0, any_weight=0.5)


def _tensors(task, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([40, 31, 25])
    preds, targets = {}, {}
    for spec in task.specs:
        outs = []
        for _, layer in spec.pairs:
            width = spec.widths[layer]
            preds[f"{spec.name}:L{layer}"] = torch.randn(3, 40, width, generator=g)
            outs.append(torch.randn(3, 40, width, generator=g))
        targets[spec.name] = (outs, lengths.clone())
    return preds, lengths, targets


def test_one_hot_posteriors_give_the_identical_loss():
    task = _task()
    preds, lengths, targets = _tensors(task)
    labels = ["speech", "music", "audio"]
    one_hot = [(1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)]
    hard, hard_metrics, _ = task.loss(preds, lengths, targets, _Batch(["a", "b", "c"], labels))
    soft, soft_metrics, _ = task.loss(preds, lengths, targets, _Batch(["a", "b", "c"], one_hot))
    assert torch.equal(hard, soft) and hard_metrics == soft_metrics
    assert torch.equal(task.weights(labels), task.weights(one_hot))


def test_soft_loss_is_the_posterior_mixture_of_label_losses():
    task = _task()
    preds, lengths, targets = _tensors(task, seed=1)
    p = (0.5, 0.2, 0.3)
    soft, _, _ = task.loss(preds, lengths, targets, _Batch(["a", "b", "c"], [p] * 3))
    by_label = [task.loss(preds, lengths, targets, _Batch(["a", "b", "c"], [d] * 3))[0]
                for d in ("speech", "audio", "music")]
    assert float(soft) == pytest.approx(sum(w * float(x) for w, x in zip(p, by_label)), rel=1e-6)
    w = task.weights([p, "unknown"])
    assert w.shape == (2, 4) and float(w[0, 3]) == 0.5 and torch.allclose(w[1, :3], torch.full((3,), 1 / 3))
    assert float(w[0, 0]) == pytest.approx(0.5 * 10 / 12 + 0.5 / 12)


def test_pipelines_carry_posteriors_per_utterance(tmp_path):
    wav = {}
    for i in range(4):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, np.full(8000 + 1000 * i, 0.1, dtype="float32"), 16000)
        wav[f"u{i}"] = str(path)
    posts = {"u0": (0.7, 0.2, 0.1), "u1": (0.0, 0.0, 1.0), "u2": (0.1, 0.8, 0.1), "u3": (0.3, 0.3, 0.4)}
    labels = {"u0": "speech", "u1": "unknown", "u2": "audio", "u3": "unknown"}
    DataDir(wav, utt2domain=labels, utt2domain_post=posts).write(tmp_path / "d")
    expected = {"labels": labels, "infer": posts,
                "mixed": {u: labels[u] if labels[u] != "unknown" else posts[u] for u in labels}}
    for source, want in expected.items():
        batch = next(iter(EvalPipeline(str(tmp_path / "d"), batch_seconds=100, domain_source=source)))
        assert dict(zip(batch.utts, batch.domains)) == want, source
        train = next(iter(TrainPipeline(str(tmp_path / "d"), batch_seconds=100, crop_seconds=None,
                                        domain_source=source)))
        assert all(want[u] == d for u, d in zip(train.utts, train.domains)), source


def test_distill_with_one_hot_inferred_domains_repeats_the_label_run(tmp_path):
    """--domain_source infer on posteriors equal to the labels: the same loss at every step."""
    import json

    from test_distill_task import make_data_dir, write_cards
    from usad2.bin.distill import main
    from usad2.data.datadir import load_data_dir
    from usad2.errors import DataDirError

    cards = write_cards(str(tmp_path / "cards"))
    train = make_data_dir(tmp_path / "train", n_per_domain=4, seed=1)
    dev = make_data_dir(tmp_path / "dev", n_per_domain=2, seed=2)

    def run(out, *extra):
        main(["--train_dir", train, "--dev_dir", dev, "--teachers", "tiny_speech,tiny_audio,tiny_music",
              "--teacher_cards", cards, "--plugins", "test_distill_task", "--out_dir", str(tmp_path / out),
              "--max_steps", "4", "--warmup_steps", "2", "--batch_seconds", "4", "--crop_seconds", "1.0",
              "--dev_every", "4", "--dropout", "0", "--precision", "fp32", *extra])
        with open(tmp_path / out / "metrics.jsonl") as f:
            return [json.loads(line) for line in f]

    with pytest.raises(DataDirError, match="needs utt2domain_post for 12 utterance"):
        run("missing", "--domain_source", "infer")
    for path in (train, dev):
        data = load_data_dir(path)
        one_hot = {u: tuple(float(d == k) for k in ("speech", "audio", "music")) for u, d in data.table("utt2domain").items()}
        DataDir(data.wav_scp, utt2domain=data.table("utt2domain"), utt2num_samples=data.table("utt2num_samples"),
                utt2domain_post=one_hot).write(path)
    labels = run("labels")
    inferred = run("infer", "--domain_source", "infer")
    keys = [k for k in labels[-1] if k.startswith(("loss", "dev/loss"))]
    assert keys and [[m.get(k) for k in keys] for m in labels] == [[m.get(k) for k in keys] for m in inferred]
    ckpt = torch.load(tmp_path / "infer" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["config"]["domain_source"] == "infer"
