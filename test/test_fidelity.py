"""Fidelity of the prediction heads (usad2.distill.fidelity, usad2.bin.fidelity): the metrics on
known tensors, and the verb on a tiny checkpoint trained on offline targets of the synthetic
teachers of test_distill_task."""
import json
import math
import os

import numpy as np
import pytest
import torch

from test_distill_task import make_data_dir, write_cards
from usad2.bin import fidelity as F
from usad2.distill.fidelity import HeadFidelity, explained_variance
from usad2.errors import CheckpointError
from usad2.report.fidelity import fidelity_table

TEACHERS = "tiny_speech,tiny_audio,tiny_music"


# ---- metrics on known tensors ------------------------------------------------------------------
def _target(n=200, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([100.0, 10.0, 1.0, 1.0, 0.1, 0.01])[:d]
    return torch.randn(n, d, generator=g) * scale + torch.arange(d) * 3.0


def test_perfect_predictor_ev_and_cos_are_one_and_the_dev_mean_gives_ev_zero():
    z = _target()
    mean, std = z.mean(0), z.std(0, unbiased=False)
    acc = HeadFidelity(mean, std, baseline=mean)          # mean predictor = the dev mean
    acc.add(z[:120], z[:120])
    acc.add(z[120:], z[120:])                              # sums over batches
    r = acc.result()
    for unit in ("orig", "std"):
        assert r["student"][unit]["ev"] == pytest.approx(1.0, abs=1e-12)
        assert r["student"][unit]["cos"] == pytest.approx(1.0, abs=1e-9)
        assert r["mean"][unit]["ev"] == pytest.approx(0.0, abs=1e-9)
    assert r["mean"]["std"]["cos"] == 0.0                 # standardised, the mean predictor is the zero vector
    assert acc.frames == 200


def test_metrics_match_numpy_by_hand():
    z = _target(seed=1).double()
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pred = z + noise * torch.tensor([50.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    train_mean, std = z.mean(0) + 0.5, torch.tensor([80.0, 9.0, 1.2, 0.9, 0.2, 0.02], dtype=torch.float64)
    acc = HeadFidelity(z.mean(0), std, baseline=train_mean)
    acc.add(pred, z)
    r = acc.result()
    zn, pn, dev_mean = z.numpy(), pred.numpy(), z.numpy().mean(0)
    sst = ((zn - dev_mean) ** 2).sum(0)
    assert r["student"]["orig"]["ev"] == pytest.approx(1 - ((pn - zn) ** 2).sum() / sst.sum(), rel=1e-9)
    w = 1 / std.numpy() ** 2
    assert r["student"]["std"]["ev"] == pytest.approx(1 - (((pn - zn) ** 2).sum(0) * w).sum() / (sst * w).sum(),
                                                      rel=1e-9)
    base = np.broadcast_to(train_mean.numpy(), zn.shape)
    assert r["mean"]["orig"]["ev"] == pytest.approx(1 - ((base - zn) ** 2).sum() / sst.sum(), rel=1e-9)
    assert r["mean"]["orig"]["ev"] < 0                    # a training mean off the dev mean is worse than it

    def cos(a, b):
        return np.mean((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))

    assert r["student"]["orig"]["cos"] == pytest.approx(cos(pn, zn), rel=1e-9)
    zs, ps = (zn - dev_mean) / std.numpy(), (pn - dev_mean) / std.numpy()
    assert r["student"]["std"]["cos"] == pytest.approx(cos(ps, zs), rel=1e-9)
    assert r["mean"]["orig"]["cos"] == pytest.approx(cos(base, zn), rel=1e-9)
    assert math.isnan(explained_variance(1.0, 0.0))


# ---- the verb on a tiny trained checkpoint ---------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Offline targets of three tiny teachers (train + dev), and 40 steps of distillation on them."""
    from usad2.bin.distill import main as distill
    from usad2.bin.extract_teacher import extract_teacher

    root = tmp_path_factory.mktemp("fidelity")
    cards = write_cards(str(root / "cards"))
    data = {"train": make_data_dir(root / "train", n_per_domain=6, seed=1),
            "dev": make_data_dir(root / "dev", n_per_domain=2, seed=2)}
    for teacher in TEACHERS.split(","):
        for name, path in data.items():
            assert extract_teacher(path, teacher, str(root / "targets" / teacher / name), teacher_cards=cards,
                                   progress=False)

    def train(out, steps, *extra):
        assert distill(["--train_dir", data["train"], "--dev_dir", data["dev"], "--teachers", TEACHERS,
                        "--teacher_cards", cards, "--targets_dir", str(root / "targets"), "--out_dir", str(out),
                        "--max_steps", str(steps), "--warmup_steps", "5", "--lr", "3e-3", "--batch_seconds", "8",
                        "--crop_seconds", "1.0", "--save_every", "1000", "--dev_every", "1000", "--dropout", "0",
                        "--log_every", "1000", *extra]) == 0
        return os.path.join(out, "checkpoints", "last.pt")

    return {"root": root, "cards": cards, **data, "targets": str(root / "targets"),
            "ckpt": train(root / "exp", 40), "raw": train(root / "exp_raw", 2, "--target_norm", "none")}


def test_fidelity_verb_on_a_trained_checkpoint(trained, capfd):
    ckpt = torch.load(trained["ckpt"], weights_only=True)
    argv = ["--checkpoint", trained["ckpt"], "--dev_dir", trained["dev"], "--targets_dir", trained["targets"],
            "--progress", "false"]
    assert F.main(argv) == 0
    out = trained["root"] / "exp" / "fidelity"                          # default: EXP/fidelity
    doc = json.loads((out / "fidelity.json").read_text())
    assert (out / ".done").is_file() and doc["utterances"] == 6 and doc["step"] == 40
    assert "TargetStats" in doc["standardisation"] and doc["mean_predictor"].startswith("training means")
    assert {h["head"]: h["student_layer"] for h in doc["heads"]} == ckpt["head_inputs"]
    by_head = {h["head"]: h for h in doc["heads"]}
    assert by_head["tiny_speech:L2"]["teacher"] == "tiny_speech" and by_head["tiny_speech:L2"]["dims"] == 24
    for h in doc["heads"]:
        assert h["frames"] > 100
        for p in ("student", "mean"):
            for u in ("orig", "std"):
                assert h[p][u]["ev"] <= 1.0 and -1.0 <= h[p][u]["cos"] <= 1.0
        assert h["mean"]["std"]["cos"] == 0.0
        assert h["mean"]["orig"]["ev"] <= 0.01          # training means: about the dev mean, not better
    # 40 steps: most heads already beat the constant in standardised units
    better = [h["student"]["std"]["ev"] > h["mean"]["std"]["ev"] for h in doc["heads"]]
    assert sum(better) >= len(better) // 2, [(h["head"], h["student"]["std"]["ev"]) for h in doc["heads"]]
    md = (out / "fidelity.md").read_text()
    assert fidelity_table(doc) in md and "How to read" in md and md.count("| tiny_music | L") == 4
    # the stamp: a rerun is skipped; --max_utts is another run (a seeded subset of the dev set)
    capfd.readouterr()
    F.main(argv)
    assert "is up to date" in capfd.readouterr().err
    sub = F.fidelity(trained["ckpt"], trained["dev"], trained["targets"], str(trained["root"] / "sub"), max_utts=3,
                     progress=False)
    assert sub["utterances"] == 3
    assert all(a["frames"] < b["frames"] for a, b in zip(sub["heads"], doc["heads"]))


def test_fidelity_without_target_stats_uses_dev_statistics(trained):
    doc = F.fidelity(trained["raw"], trained["dev"], trained["targets"], str(trained["root"] / "raw_fid"),
                     progress=False)
    assert doc["standardisation"].startswith("dev statistics") and doc["mean_predictor"].startswith("dev means")
    for h in doc["heads"]:                                # the dev mean of the measured frames: EV 0 exactly
        assert h["mean"]["orig"]["ev"] == pytest.approx(0.0, abs=1e-6)
        assert h["mean"]["std"]["ev"] == pytest.approx(0.0, abs=1e-6)


def test_fidelity_needs_a_training_checkpoint(trained, tmp_path):
    from usad2.models.export import export_from_checkpoint

    export = tmp_path / "model.pt"
    export_from_checkpoint(trained["ckpt"], str(export))
    with pytest.raises(CheckpointError, match="not a usad2 training checkpoint"):
        F.fidelity(str(export), trained["dev"], trained["targets"], str(tmp_path / "o"))
