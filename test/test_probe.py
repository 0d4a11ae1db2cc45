"""Probing: metrics against hand computations, probe behaviour on synthetic features, frame
labels from note tables, and the probe command end to end on a tiny synthetic corpus."""
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from usad2.data.datadir import DataDir
from usad2.errors import ConfigError, DataDirError
from usad2.probe import metrics
from usad2.probe.heads import ConcatLinearProbe, LayerProbe, ProbeConfig, fit_probe
from usad2.probe.tasks import Task, frame_labels, frame_times, read_notes

FAST = ProbeConfig(lrs=(1e-2,), weight_decays=(0.0,), max_epochs=30)


# ---- metrics ------------------------------------------------------------------------------------
def test_accuracy_and_macro_f1_by_hand():
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0]
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(3 / 5)
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 1 fn 0 -> 0.8; class 2: tp 0 -> 0
    assert metrics.f1_per_class(y_true, y_pred) == pytest.approx({0: 0.5, 1: 0.8, 2: 0.0})
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # a class only predicted (never true) counts, with F1 0
    assert metrics.macro_f1([0, 0], [0, 3]) == pytest.approx((2 / 3 + 0.0) / 2)


def test_average_precision_by_hand():
    # ranking by score: e1(+), e3(-), e0(+), e2(-) -> precisions at the hits 1/1 and 2/3
    targets = [1, 1, 0, 0]
    scores = [0.5, 0.9, 0.1, 0.7]
    assert metrics.average_precision(targets, scores) == pytest.approx((1 / 1 + 2 / 3) / 2)
    # mAP skips a class with no positives
    t = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    s = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5], [0.3, 0.6, 0.5]])
    ap0 = metrics.average_precision(t[:, 0], s[:, 0])          # ranks 1 and 2 -> 1.0
    ap1 = metrics.average_precision(t[:, 1], s[:, 1])          # positive at rank 1 -> 1.0
    assert (ap0, ap1) == (1.0, 1.0)
    s[1, 1] = 0.0                                             # positive now at rank 3 -> 1/3
    assert metrics.mean_average_precision(t, s) == pytest.approx((1.0 + 1 / 3) / 2)
    assert np.isnan(metrics.average_precision([0, 0], [0.1, 0.2]))


def test_chance_scores():
    assert metrics.chance_accuracy([1, 1, 2], [1, 2, 2, 1]) == 0.5
    assert metrics.chance_score([1, 1, 2], [1, 2, 2, 1], "accuracy") == 0.5
    # always 1: F1 of class 1 = 2*2/(2*2+2+0) = 2/3, class 2 = 0 -> 1/3
    assert metrics.chance_score([1, 1, 2], [1, 2, 2, 1], "macro_f1") == pytest.approx(1 / 3)
    assert metrics.chance_score(None, [[1, 0, 0], [1, 1, 0]], "map") == pytest.approx((1.0 + 0.5) / 2)


# ---- probes on synthetic features ------------------------------------------------------------------
def _split(n, seed, informative_layer=0, num_layers=1, dims=(8,), classes=4, random_labels=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, max(dims), generator=torch.Generator().manual_seed(99)) * 3
    layers = []
    for layer in range(num_layers):
        d = dims[layer % len(dims)]
        x = torch.randn(n, d, generator=g)
        if layer == informative_layer:
            x = x + centres[y, :d]
        layers.append(x)
    if random_labels:
        y = torch.randint(0, classes, (n,), generator=g)
    return layers, y


def test_separable_task_is_learned_and_random_labels_stay_at_chance():
    data = [_split(n, s) for n, s in ((400, 1), (200, 2), (400, 3))]
    good = fit_probe(*data, 4, FAST, "accuracy", False)
    assert good["test"]["accuracy"] > 0.9
    assert good["test"]["macro_f1"] > 0.9
    noise = [_split(n, s, random_labels=True) for n, s in ((400, 1), (200, 2), (400, 3))]
    bad = fit_probe(*noise, 4, FAST, "accuracy", False)
    assert bad["test"]["accuracy"] < 0.4          # chance is 0.25
    assert set(bad["hparams"]) == {"lr", "weight_decay", "epochs", "layer", "hidden"}


def test_weighted_sum_puts_weight_on_the_informative_layer():
    kw = dict(informative_layer=1, num_layers=4, dims=(8, 12, 6, 8))
    data = [_split(n, s, **kw) for n, s in ((400, 1), (200, 2), (300, 3))]
    result = fit_probe(*data, 4, ProbeConfig(lrs=(3e-2,), weight_decays=(0.0,), max_epochs=40), "accuracy", False)
    weights = result["layer_weights"]
    assert len(weights) == 4 and sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert int(np.argmax(weights)) == 1 and weights[1] > 0.4
    assert result["test"]["accuracy"] > 0.8
    # a probe on one chosen layer: weights are one-hot, the wrong layer learns nothing
    wrong = fit_probe(*data, 4, ProbeConfig(layer=0, lrs=(1e-2,), weight_decays=(0.0,), max_epochs=20),
                      "accuracy", False)
    assert wrong["layer_weights"] == [1.0, 0.0, 0.0, 0.0]
    assert wrong["test"]["accuracy"] < 0.45


def test_mlp_head_and_multi_label():
    probe = LayerProbe([8, 4], 3, hidden=16)
    assert probe([torch.zeros(5, 8), torch.zeros(5, 4)]).shape == (5, 3)
    layers, y = _split(300, 5, classes=3)
    multi = torch.nn.functional.one_hot(y, 3).float()
    dev_layers, dev_y = _split(100, 6, classes=3)
    test_layers, test_y = _split(200, 7, classes=3)
    result = fit_probe((layers, multi), (dev_layers, torch.nn.functional.one_hot(dev_y, 3).float()),
                       (test_layers, torch.nn.functional.one_hot(test_y, 3).float()), 3, FAST, "map", True)
    assert set(result["test"]) == {"map"} and result["test"]["map"] > 0.9


def _two_layer_split(n, seed):
    """Two layers whose class information adds up: the class is the sign pattern of (a0 + b0, a1 + b1),
    so each layer alone predicts it only partly and the two side by side predict it exactly."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    s = a[:, :2] + b[:, :2]
    y = (s[:, 0] > 0).long() * 2 + (s[:, 1] > 0).long()
    return [a, b], y


def test_concat_readout_reads_information_spread_over_layers():
    data = [_two_layer_split(n, s) for n, s in ((800, 1), (300, 2), (600, 3))]
    concat = fit_probe(*data, 4, ProbeConfig(layer="concat"), "accuracy", False)
    assert concat["test"]["accuracy"] > 0.9
    assert set(concat["hparams"]) == {"l2", "iterations", "layer", "hidden"}
    assert concat["hparams"]["layer"] == "concat" and concat["hparams"]["l2"] in ProbeConfig().l2s
    assert concat["layer_weights"] == pytest.approx([0.5, 0.5], abs=0.15) and sum(concat["layer_weights"]) == \
        pytest.approx(1.0)
    # a softmax-weighted sum mixes the layers into one 6-d vector: a + b is all it needs here, so it
    # can do as well; one layer alone cannot
    one = fit_probe(*data, 4, ProbeConfig(layer=0, lrs=(1e-2,), weight_decays=(0.0,), max_epochs=40),
                    "accuracy", False)
    assert one["test"]["accuracy"] < concat["test"]["accuracy"] - 0.2


def test_concat_readout_is_convex_and_seed_free():
    data = [_split(n, s, informative_layer=1, num_layers=3, dims=(8, 12, 6)) for n, s in ((300, 1), (100, 2), (200, 3))]
    first = fit_probe(*data, 4, ProbeConfig(layer="concat", seed=0), "accuracy", False)
    again = fit_probe(*data, 4, ProbeConfig(layer="concat", seed=7), "accuracy", False)
    assert first == again
    assert first["test"]["accuracy"] > 0.9
    assert int(np.argmax(first["layer_weights"])) == 1 and first["layer_weights"][1] > 0.5
    # the penalty chosen on dev is applied: a huge L2 keeps the weights near zero and the score at chance
    crushed = fit_probe(*data, 4, ProbeConfig(layer="concat", l2s=(1e3,)), "accuracy", False)
    assert crushed["hparams"]["l2"] == 1e3 and crushed["test"]["accuracy"] < 0.45
    probe = ConcatLinearProbe([8, 12, 6], 4)
    assert probe([torch.zeros(5, 8), torch.zeros(5, 12), torch.zeros(5, 6)]).shape == (5, 4)
    multi = [(x, torch.nn.functional.one_hot(y, 4).float()) for x, y in data]
    assert fit_probe(*multi, 4, ProbeConfig(layer="concat"), "map", True)["test"]["map"] > 0.9
    with pytest.raises(ValueError, match="linear"):
        fit_probe(*data, 4, ProbeConfig(layer="concat", hidden=8), "accuracy", False)


def test_probe_stamp_fields_keep_old_stamps():
    assert set(ProbeConfig().stamp_fields()) == {"layer", "hidden", "lrs", "weight_decays", "max_epochs",
                                                 "batch_size", "seed"}
    assert ProbeConfig(layer="concat").stamp_fields()["l2s"] == ProbeConfig().l2s


# ---- tasks and frame labels -------------------------------------------------------------------
def test_frame_labels_from_note_table_and_inline_triples(tmp_path):
    table = tmp_path / "clip1.tsv"
    table.write_text("onset\toffset\tpitch\tvelocity\n0.100\t0.300\t60\t90\n0.200\t0.400\t55\t90\n")
    notes = read_notes((str(table),), "clip1", "utt2notes")
    assert notes == [(0.1, 0.3, 60), (0.2, 0.4, 55)]
    times = frame_times(5, 10, 0.05)                       # 0.05 0.15 0.25 0.35 0.45
    assert frame_labels(notes, times, "activity") == ["none", "note", "note", "note", "none"]
    assert frame_labels(notes, times, "pitch_class") == ["none", "C", "G", "G", "none"]   # lowest sounding
    # a stage-2 piece starting at 150 ms of the clip: times shift, notes already over drop out
    piece = read_notes((str(table),), "clip1-0000150", "utt2notes")
    assert np.allclose(piece, [(-0.05, 0.15, 60), (0.05, 0.25, 55)])
    assert read_notes(("0.1", "0.2", "64"), "u", "f") == [(0.1, 0.2, 64)]
    with pytest.raises(DataDirError, match=r"clip2.tsv:1: expected the header"):
        bad = tmp_path / "clip2.tsv"
        bad.write_text("start end\n")
        read_notes((str(bad),), "clip2", "utt2notes")
    with pytest.raises(DataDirError, match=r"utt2notes: utterance u: .*start <= end"):
        read_notes(("0.3", "0.2", "64"), "u", "utt2notes")


def test_task_validation():
    with pytest.raises(ConfigError, match="frame_target"):
        Task("x", "music", "utt2notes", level="frame")
    with pytest.raises(ConfigError, match="level"):
        Task("x", "music", "utt2x", level="clip")


# ---- end to end on a tiny synthetic corpus ----------------------------------------------------------
FREQS = {"A": 220.0, "C": 261.63, "E": 329.63}
MIDI = {"A": 57, "C": 60, "E": 64}


def _make_corpus(root):
    """train/dev/test dirs of 0.5 s clips: a tone (class A/C/E) from ~0.15 s to ~0.35 s in noise."""
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    for split, n in (("train", 24), ("dev", 9), ("test", 12)):
        wav, dom, pc, rnd, notes = {}, {}, {}, {}, {}
        os.makedirs(root / "wavs", exist_ok=True)
        for i in range(n):
            utt, lab = f"{split}_{i:03d}", "ACE"[i % 3]
            x = 0.05 * rng.standard_normal(8000)
            on, off = 0.1 + 0.1 * rng.random(), 0.3 + 0.1 * rng.random()
            m = (t >= on) & (t < off)
            x[m] += 0.5 * np.sin(2 * np.pi * FREQS[lab] * t[m])
            path = root / "wavs" / f"{utt}.wav"
            sf.write(path, x.astype(np.float32), 16000)
            wav[utt], dom[utt], pc[utt], rnd[utt] = str(path), "music", lab, "ab"[int(rng.integers(2))]
            notes[utt] = f"{on:.3f} {off:.3f} {MIDI[lab]}"
        DataDir(wav, utt2domain=dom, utt2pitch_class=pc, utt2style=rnd, utt2notes=notes).write(root / split)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_corpus")
    _make_corpus(root)
    return root


def test_probe_command_end_to_end(corpus, tmp_path, capfd):
    from usad2.bin import probe as probe_bin

    out = tmp_path / "probe"
    argv = ["--model", "fbank", "--model", "random_init=tiny", "--data_root", str(corpus), "--out_dir", str(out),
            "--lrs", "1e-2", "--weight_decays", "0", "--max_epochs", "15", "--max_frame_utts", "10",
            "--tasks", "pitch_class,style,note_activity,word"]
    assert probe_bin.main(argv) == 0
    assert "task word skipped: none of utt2word" in capfd.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"fbank", "random_init"}
    for entry in results.values():
        assert set(entry) == {"pitch_class", "style", "note_activity", "_domain_mean", "_mean"}
        assert set(entry["_domain_mean"]) == {"music"}
        scores = [entry[t] for t in ("pitch_class", "style", "note_activity")]
        assert entry["_mean"] == pytest.approx(np.mean(scores))
    assert results["fbank"]["note_activity"] > 0.85        # frame level: a tone in noise, per frame
    assert results["fbank"]["pitch_class"] > 0.6           # chance 1/3
    details = json.loads((out / "details.json").read_text())
    d = details["random_init"]["note_activity"]
    assert d["level"] == "frame" and d["metric"] == "macro_f1" and d["num_classes"] == 2
    assert d["layer_names"] == ["frontend", "L1", "L2", "L3", "L4"] and len(d["layer_weights"]) == 5
    # frames of 10 of the 12 test clips (--max_frame_utts), 0.5 s at 50 Hz: 24 frames per clip
    assert d["num_examples"] == {"train": 10 * 24, "dev": 9 * 24, "test": 10 * 24}
    assert set(d["test"]) == {"accuracy", "macro_f1"} and d["hparams"]["lr"] == 0.01
    assert details["fbank"]["pitch_class"]["num_examples"] == {"train": 24, "dev": 9, "test": 12}
    # features are cached and stamped; a second run with the same arguments is skipped
    assert len(list((out / "features").glob("fbank-*/train-*/.done"))) == 1
    probe_bin.main(argv)
    assert "is up to date" in capfd.readouterr().err


def test_probe_command_concat_readout(corpus, tmp_path, capfd):
    from usad2.bin import probe as probe_bin

    out = tmp_path / "probe"
    argv = ["--model", "fbank", "--model", "random_init=tiny", "--data_root", str(corpus), "--out_dir", str(out),
            "--max_frame_utts", "10", "--tasks", "pitch_class,note_activity"]
    assert probe_bin.main(argv + ["--lrs", "1e-2", "--weight_decays", "0", "--max_epochs", "5"]) == 0
    assert probe_bin.main(argv + ["--layer", "concat", "--l2s", "1e-3,1e-1"]) == 0
    assert "is up to date" not in capfd.readouterr().err   # another read-out, another stamp
    results = json.loads((out / "results.json").read_text())
    assert results["fbank"]["note_activity"] > 0.85 and results["fbank"]["pitch_class"] > 0.6
    details = json.loads((out / "details.json").read_text())
    d = details["random_init"]["note_activity"]
    assert d["hparams"]["layer"] == "concat" and d["hparams"]["l2"] in (1e-3, 1e-1)
    assert len(d["layer_weights"]) == 5 and sum(d["layer_weights"]) == pytest.approx(1.0)


def test_student_export_and_heads_of_a_training_checkpoint(corpus, tmp_path):
    from usad2.models.export import save_export
    from usad2.models.heads import build_heads
    from usad2.models.presets import get_preset
    from usad2.models.wave_encoder import Usad2Model
    from usad2.probe.cache import extract_features
    from usad2.probe.features import model_from_spec

    torch.manual_seed(0)
    model = Usad2Model(get_preset("tiny"))
    save_export(model, tmp_path / "model.pt")
    student = model_from_spec(f"student={tmp_path / 'model.pt'}")
    assert student.num_layers == 5 and student.frame_rate == 50.0
    # frame t is centred at 12.5 ms + 20 ms t, where distillation aligns it (Usad2Model.timing)
    assert student.frame_offset == model.timing.offset == 0.0125
    heads = build_heads({("yamnet", 2): 256, ("yamnet", 6): 1024, ("basic_pitch", 1): 264}, 64)
    ckpt = {"format": "usad2-train", "model": {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()},
            "heads": heads.state_dict(), "model_config": model.config.to_dict(),
            "fbank_config": model.fbank_config.to_dict(),
            "head_inputs": {"yamnet:L2": 2, "yamnet:L6": 4, "basic_pitch:L1": 4}}
    torch.save(ckpt, tmp_path / "last.pt")
    probed = model_from_spec(f"student_heads=heads:{tmp_path / 'last.pt'}")
    assert probed.names() == ["basic_pitch:L1", "yamnet:L2", "yamnet:L6"]
    assert probed.head_inputs == {"basic_pitch:L1": 4, "yamnet:L2": 2, "yamnet:L6": 4}
    feats = extract_features(probed, corpus / "dev", tmp_path / "cache")
    assert [x.shape for x in feats.pooled] == [(9, 264), (9, 256), (9, 1024)]
    # the heads' outputs are the heads applied to the layers they read
    enc = extract_features(model_from_spec(f"student={tmp_path / 'last.pt'}"), corpus / "dev", tmp_path / "cache")
    assert np.allclose(enc.pooled[0], extract_features(student, corpus / "dev", tmp_path / "c2").pooled[0], atol=1e-5)
    # linear heads (distill --head_hidden 0) are read back as linear heads
    linear = build_heads({("yamnet", 2): 256}, 64, hidden_dim=0)
    torch.save(dict(ckpt, heads=linear.state_dict(), head_inputs={"yamnet:L2": 2}), tmp_path / "linear.pt")
    lin = model_from_spec(f"h=heads:{tmp_path / 'linear.pt'}")
    assert [type(m).__name__ for m in lin.heads["yamnet:L2"]] == ["Linear"]
    assert torch.equal(lin.heads["yamnet:L2"][0].weight, linear["yamnet:L2"][0].weight)
    # without recorded inputs the sparse rule maps K heads of a teacher onto floor(k L / K)
    del ckpt["head_inputs"]
    torch.save(ckpt, tmp_path / "rule.pt")
    assert model_from_spec(f"h=heads:{tmp_path / 'rule.pt'}").head_inputs == \
        {"basic_pitch:L1": 4, "yamnet:L2": 2, "yamnet:L6": 4}
    # teachers_of= expands to the teachers a checkpoint records, without repeating named ones
    from usad2.bin.probe import expand_specs

    ckpt["teachers"] = [{"name": "yamnet"}, {"name": "basic_pitch"}]
    torch.save(ckpt, tmp_path / "t.pt")
    assert expand_specs(["fbank", "yamnet", f"teachers_of={tmp_path / 't.pt'}", f"teachers_of={tmp_path / 't.pt'}"]) \
        == ["fbank", "yamnet", "basic_pitch"]
    with pytest.raises(ConfigError, match="records no teachers"):
        expand_specs([f"teachers_of={tmp_path / 'model.pt'}"])


def test_teacher_through_the_teacher_interface(corpus, tmp_path, monkeypatch):
    pytest.importorskip("s3prl")
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "s3prl_fbank.yaml").write_text(
        "name: s3prl_fbank\nfamily: s3prl\ndomain: speech\nsample_rate: 16000\nframe_rate: 100\n"
        "num_layers: 1\nwidth: 240\noptions: {upstream: fbank}\n")
    monkeypatch.setenv("USAD2_TEACHER_CARDS", str(cards))
    from usad2.probe.cache import extract_features
    from usad2.probe.features import model_from_spec

    teacher = model_from_spec("s3prl_fbank")
    assert teacher.num_layers == 1 and teacher.frame_rate == 100.0
    feats = extract_features(teacher, corpus / "dev", tmp_path / "cache")
    assert feats.pooled[0].shape == (9, 240)


def test_teacher_cards_option_finds_user_cards_and_stamps_their_files(corpus, tmp_path, monkeypatch, capfd):
    import test_distill_task
    from usad2.bin.probe import main
    from usad2.probe.features import model_from_spec
    from usad2.teachers.base import TeacherError

    monkeypatch.delenv("USAD2_TEACHER_CARDS", raising=False)
    cards = test_distill_task.write_cards(str(tmp_path / "cards"))
    with pytest.raises(TeacherError, match="unknown teacher 'tiny_music'"):
        model_from_spec("tiny_music")
    assert model_from_spec("tiny_music", card_dirs=cards).num_layers == 5
    out = tmp_path / "probe"
    argv = ["--model", "tiny_music", "--model", "fbank", "--data_root", str(corpus), "--out_dir", str(out),
            "--tasks", "pitch_class", "--lrs", "1e-2", "--weight_decays", "0", "--max_epochs", "2",
            "--feature_cache", str(tmp_path / "cache"), "--teacher_cards", cards]
    assert main(argv) == 0
    assert set(json.loads((out / "results.json").read_text())) == {"tiny_music", "fbank"}
    capfd.readouterr()
    main(argv)
    assert "is up to date" in capfd.readouterr().err
    # the user card is part of the stamp: an edited card (same name) is probed again
    card = os.path.join(cards, "tiny_music.yaml")
    with open(card, "a", encoding="utf-8") as f:
        f.write("# edited\n")
    main(argv)
    assert "is up to date" not in capfd.readouterr().err


def test_bad_specs_are_config_errors(corpus, tmp_path):
    from usad2.bin.probe import probe
    from usad2.errors import CheckpointError
    from usad2.probe.features import model_from_spec

    with pytest.raises(ConfigError, match="name must be"):
        model_from_spec("a b=x")
    with pytest.raises(CheckpointError, match="no such file"):
        model_from_spec(f"student={tmp_path / 'missing.pt'}")
    with pytest.raises(ConfigError, match="duplicate model names"):
        probe(["fbank", "fbank"], str(tmp_path), str(tmp_path / "o"))
    with pytest.raises(ConfigError, match=r"--layer 3: model fbank has layers 0..0 \(fbank\)"):
        probe(["fbank"], str(corpus), str(tmp_path / "o"), tasks="pitch_class", layer="3")
    with pytest.raises(ConfigError, match="'weighted', 'concat' or a layer index"):
        probe(["fbank"], str(corpus), str(tmp_path / "o"), tasks="pitch_class", layer="all")
    with pytest.raises(ConfigError, match="--layer concat is a linear read-out"):
        probe(["fbank"], str(corpus), str(tmp_path / "o"), tasks="pitch_class", layer="concat", hidden=8)
    with pytest.raises(ConfigError, match="--l2s"):
        probe(["fbank"], str(corpus), str(tmp_path / "o"), tasks="pitch_class", layer="concat", l2s=())
    with pytest.raises(ConfigError, match="not in suite"):
        probe(["fbank"], str(tmp_path), str(tmp_path / "o"), tasks="nope")
    with pytest.raises(ConfigError, match="seed after '@' must be a whole number"):
        model_from_spec("random_init=tiny@x")


def test_random_init_seed_in_the_spec():
    from usad2.probe.features import model_from_spec

    def weights(spec, seed=0):
        return next(model_from_spec(spec, seed=seed).model.parameters()).detach()

    # @N overrides the probe seed; without it the probe seed draws the weights
    assert torch.equal(weights("r=random:tiny@3"), weights("random_init=tiny", seed=3))
    assert not torch.equal(weights("r=random:tiny@1"), weights("r=random:tiny@2"))
    assert model_from_spec("r=random:tiny@1").identity()["seed"] == 1


# ---- the teachers_concat topline ---------------------------------------------------------------------
def test_grouped_probe_weights_each_group_and_concatenates():
    widths, groups = [8, 12, 6, 4, 4], [0, 0, 0, 1, 1]
    probe = LayerProbe(widths, 3, groups=groups)
    layers = [torch.randn(5, w) for w in widths]
    assert probe.dim == 12 + 4 and probe.combine(layers).shape == (5, 16)
    with torch.no_grad():
        probe.weights.copy_(torch.tensor([0.0, 1.0, 2.0, 0.5, -0.5]))
    w = probe.layer_weights()
    assert sum(w[:3]) == pytest.approx(1.0) and sum(w[3:]) == pytest.approx(1.0)
    expected = torch.cat([sum(wi * torch.nn.functional.pad(x, (0, 12 - x.shape[1])) for wi, x in zip(w[:3], layers[:3])),
                          w[3] * layers[3] + w[4] * layers[4]], 1)
    assert torch.allclose(probe.combine(layers), expected, atol=1e-6)
    # a chosen layer is taken in each group, the group's last when it has fewer layers
    chosen = LayerProbe(widths, 3, layer=2, groups=groups)
    assert chosen.layer_weights() == [0.0, 0.0, 1.0, 0.0, 1.0] and chosen.dim == 6 + 4
    # one group (groups=None) is the plain weighted-sum probe
    plain = LayerProbe(widths, 3)
    assert plain.dim == 12 and len(plain.layer_weights()) == 5


@pytest.fixture
def tiny_cards(tmp_path, monkeypatch):
    """Cards of the synthetic tiny_spec teachers of test_distill_task (25, 40 and 100 Hz) on the search path."""
    import test_distill_task

    cards = test_distill_task.write_cards(str(tmp_path / "cards"))
    monkeypatch.setenv("USAD2_TEACHER_CARDS", cards)
    return cards


def test_cache_entry_frames_only_grow(corpus, tmp_path, tiny_cards):
    """A run asking for fewer frames reads the entry; one asking for others recomputes it with
    both lists, so the frames a previous run stored are never dropped."""
    from usad2.probe.cache import extract_features
    from usad2.probe.features import model_from_spec

    teacher, cache = model_from_spec("tiny_music"), tmp_path / "cache"

    def extract(frame_utts):
        fresh = set()
        feats = extract_features(teacher, corpus / "dev", cache, frame_utts, fresh=fresh)
        return feats, bool(fresh)

    both, computed = extract(["dev_000", "dev_004"])
    assert computed and sorted(both.frames) == ["dev_000", "dev_004"]
    fewer, computed = extract(["dev_004"])
    assert not computed and sorted(fewer.frames) == ["dev_004"]   # read, and only what was asked
    assert np.array_equal(fewer.frames["dev_004"][0], both.frames["dev_004"][0])
    assert np.array_equal(fewer.pooled[0], both.pooled[0])
    none, computed = extract([])
    assert not computed and none.frames == {}
    other, computed = extract(["dev_001"])
    assert computed and sorted(other.frames) == ["dev_001"]
    again, computed = extract(["dev_000", "dev_001", "dev_004"])   # the union was stored
    assert not computed and sorted(again.frames) == ["dev_000", "dev_001", "dev_004"]
    assert np.array_equal(again.frames["dev_000"][1], both.frames["dev_000"][1])


def test_teachers_concat_features_come_from_the_teachers_cache(corpus, tmp_path, tiny_cards, caplog):
    from usad2.probe.cache import extract_features
    from usad2.probe.features import ConcatProbe, model_from_spec

    concat = model_from_spec("teachers_concat=concat:tiny_speech,tiny_music,tiny_audio")
    assert isinstance(concat, ConcatProbe)
    assert concat.names()[:4] == ["tiny_speech/L1", "tiny_speech/L2", "tiny_speech/L3", "tiny_music/L1"]
    assert concat.groups == [0] * 3 + [1] * 5 + [2] * 2 and concat.frame_rate == 100.0   # tiny_music's grid
    frame_utts = ["dev_000", "dev_004"]
    cache = tmp_path / "cache"
    parts = {p.name: extract_features(p, corpus / "dev", cache, frame_utts) for p in concat.parts}
    stamps = {p: p.stat().st_mtime_ns for p in cache.glob("*/*/.done")}
    caplog.set_level("INFO", logger="usad2.probe.cache")
    caplog.clear()
    feats = extract_features(concat, corpus / "dev", cache, frame_utts)
    assert "features: tiny_speech on" in caplog.text and "(9 utterances" not in caplog.text   # read, not run
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*/*/.done")} == stamps
    assert sorted(d.name.split("-")[0] for d in cache.iterdir()) == ["tiny_audio", "tiny_music", "tiny_speech"]
    # pooled: each teacher's own utterance means, layer by layer
    assert [x.shape for x in feats.pooled] == [(9, 16), (9, 24), (9, 12)] + [(9, 12)] * 5 + [(9, 20), (9, 8)]
    assert np.array_equal(feats.pooled[3], parts["tiny_music"].pooled[0])
    assert np.array_equal(feats.pooled[-1], parts["tiny_audio"].pooled[1])
    # frames: tiny_music's 100 Hz grid; the 25 Hz and 40 Hz teachers held at the nearest frame centre
    music, speech = parts["tiny_music"].frames["dev_000"], parts["tiny_speech"].frames["dev_000"]
    joined = feats.frames["dev_000"]
    assert all(x.shape[0] == music[0].shape[0] for x in joined) and music[0].shape[0] == 48
    assert np.array_equal(joined[3], music[0])
    t = 0.0125 + np.arange(48) / 100.0
    nearest = np.clip(np.rint((t - 0.0125) * 25), 0, speech[0].shape[0] - 1).astype(int)
    assert np.array_equal(joined[0], speech[0][nearest]) and nearest[3] == 1 and nearest[-1] == speech[0].shape[0] - 1
    with pytest.raises(ConfigError, match="at least two teachers"):
        model_from_spec("c=concat:tiny_speech")
    with pytest.raises(ConfigError, match="named twice"):
        model_from_spec("c=concat:tiny_speech,tiny_speech")


def test_teachers_concat_probe_end_to_end(corpus, tmp_path, tiny_cards, caplog):
    from usad2.bin.probe import probe

    caplog.set_level("INFO", logger="usad2.probe.cache")
    caplog.clear()
    out = tmp_path / "probe"
    results = probe(["tiny_speech", "tiny_music", "teachers_concat=concat:tiny_speech,tiny_music", "fbank"],
                    str(corpus), str(out), tasks="pitch_class,note_activity", lrs=(1e-2,), weight_decays=(0.0,),
                    max_epochs=15, max_frame_utts=10, force=True)
    # --force: each teacher is still extracted once per data dir, not again for the concat
    for teacher in ("tiny_speech", "tiny_music"):
        assert caplog.text.count(f"features: {teacher} on {corpus / 'dev'} (") == 1
    entry = results["teachers_concat"]
    assert set(entry) == {"pitch_class", "note_activity", "_domain_mean", "_mean"}
    assert all(0.0 <= entry[t] <= 1.0 for t in ("pitch_class", "note_activity"))
    details = json.loads((out / "details.json").read_text())["teachers_concat"]
    frame = details["note_activity"]
    assert frame["layer_names"][0] == "tiny_speech/L1" and len(frame["layer_weights"]) == 3 + 5
    assert sum(frame["layer_weights"][:3]) == pytest.approx(1.0) and sum(frame["layer_weights"][3:]) == pytest.approx(1.0)
    # frames on tiny_music's 100 Hz grid (48 per 0.5 s clip), as tiny_music alone has
    assert frame["num_examples"] == json.loads((out / "details.json").read_text())["tiny_music"]["note_activity"][
        "num_examples"]
    assert details["pitch_class"]["num_examples"] == {"train": 24, "dev": 9, "test": 12}


def test_bf16_features_are_cached_apart_and_close_to_fp32(corpus, tmp_path):
    from usad2.models.export import save_export
    from usad2.models.presets import get_preset
    from usad2.models.wave_encoder import Usad2Model
    from usad2.probe.cache import extract_features
    from usad2.probe.features import model_from_spec

    torch.manual_seed(0)
    save_export(Usad2Model(get_preset("tiny")), tmp_path / "model.pt")
    fp32 = model_from_spec(f"student={tmp_path / 'model.pt'}", precision="fp32")
    bf16 = model_from_spec(f"student={tmp_path / 'model.pt'}", precision="bf16")
    assert fp32.cache_identity() == fp32.identity()  # fp32 keeps the cache key it always had
    assert bf16.cache_identity() == dict(fp32.identity(), precision="bf16")
    a = extract_features(fp32, corpus / "dev", tmp_path / "cache")
    b = extract_features(bf16, corpus / "dev", tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("student-*/dev-*/.done"))) == 2
    for x, y in zip(a.pooled, b.pooled):
        rel = np.linalg.norm(x - y) / np.linalg.norm(x)
        assert 0 < rel < 0.05  # bf16 ran and stays close
    # the fbank has no torch compute to speed up: one identity, one cache entry at any precision
    fb = model_from_spec("fbank", precision="bf16")
    assert fb.cache_identity() == fb.identity()
