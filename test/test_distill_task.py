"""The distillation task and its target providers, with a tiny deterministic synthetic teacher.

`TinyTeacher` (family "tiny_spec") is a real torch module: log power spectrum at the card's hop,
then fixed random projections with tanh, one output per layer, times the card's `scale`. It is
registered on import, so trainer subprocesses load it with `--plugins test_distill_task`.
Helpers here (data dirs, cards) are shared with test_trainer.py.
"""
import dataclasses
import fractions
import math
import os
import types

import numpy as np
import pytest
import soundfile
import torch
import yaml

from usad2.data.datadir import DataDir
from usad2.distill.align import AlignmentError
from usad2.distill.target_sources import OfflineTargets, OnlineTargets, crop_frame_range
from usad2.distill.task import (DistillModel, DistillTask, EvalAccumulator, TargetStats, denormalise_preds, stage1_spec,
                                stage2_spec)
from usad2.errors import ConfigError
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model, frame_timing
from usad2.teachers.base import Teacher, TeacherCard, register_family
from usad2.teachers.registry import build_teacher, load_card

SR = 16000


@register_family("tiny_spec")
class TinyTeacher(Teacher):
    """Fixed random spectral teacher: frames of `win` samples every 16000 / frame_rate samples."""

    def __init__(self, card, cache=None, device="cpu"):
        super().__init__(card)
        hop = fractions.Fraction(SR) / card.frame_rate
        assert hop.denominator == 1, "tiny_spec needs an integer hop"
        self.hop, self.win = int(hop), 400
        g = torch.Generator().manual_seed(int(card.options.get("seed", 0)))
        dims = [201] + [card.layer_width(k) for k in range(1, card.num_layers + 1)]
        self.weights = [torch.randn(dims[i], dims[i + 1], generator=g) / math.sqrt(dims[i])
                        for i in range(card.num_layers)]
        self.scale = float(card.options.get("scale", 1.0))

    def _one(self, wave):
        n = 1 + (wave.shape[0] - self.win) // self.hop if wave.shape[0] >= self.win else 0
        frames = wave[:(n - 1) * self.hop + self.win].unfold(0, self.win, self.hop) if n else wave.new_zeros(0, self.win)
        spec = torch.fft.rfft(frames * torch.hann_window(self.win, periodic=False), dim=-1)
        x = torch.log(spec.abs() ** 2 + 1e-4)
        x = (x - x.new_tensor(-2.0)) / 4.0
        outs = []
        for w in self.weights:
            x = torch.tanh(x @ w * 0.7)
            outs.append(x * self.scale)
        return outs, n

    def _extract(self, wavs, lengths, layers):
        per_utt = [self._one(wavs[i, :int(lengths[i])].double().float()) for i in range(wavs.shape[0])]
        t_max = max(n for _, n in per_utt)
        outputs = []
        for k in layers:
            out = torch.zeros(wavs.shape[0], t_max, self.card.layer_width(k))
            for i, (outs, n) in enumerate(per_utt):
                out[i, :n] = outs[k - 1]
            outputs.append(out)
        return outputs, torch.tensor([n for _, n in per_utt])


# name: (domain, frame rate, widths, scale)
TINY_TEACHERS = {
    "tiny_speech": ("speech", 25, [16, 24, 12], 1.0),
    "tiny_audio": ("audio", 40, [20, 8], 30.0),   # 50 -> 40 Hz: interpolation; large scale
    "tiny_music": ("music", 100, [12, 12, 12, 12, 12], 0.05),  # teacher pooled by 2; small scale
}


def write_cards(directory, names=None):
    """Write tiny_spec cards into `directory`; returns it."""
    os.makedirs(directory, exist_ok=True)
    for i, name in enumerate(names or TINY_TEACHERS):
        domain, rate, widths, scale = TINY_TEACHERS[name]
        card = {"name": name, "family": "tiny_spec", "domain": domain, "sample_rate": SR,
                "frame_rate": rate, "frame_offset": 0.0125, "num_layers": len(widths), "width": widths[0],
                "widths": widths, "options": {"seed": i + 1, "scale": scale}}
        if len(widths) < 4:
            card["distill_layers"] = list(range(1, len(widths) + 1))
        with open(os.path.join(directory, f"{name}.yaml"), "w") as f:
            yaml.safe_dump(card, f)
    return directory


def tiny_distill_runner(tmp_path, train, cards):
    """run(out, *extra, steps="2"): two deterministic distill steps of the three tiny teachers into
    tmp_path/out (fp32, no dropout, seed 0), for tests that compare runs differing in one option."""
    from usad2.bin.distill import main

    def run(out, *extra, steps="2"):
        return main(["--train_dir", train, "--teachers", "tiny_speech,tiny_audio,tiny_music",
                     "--teacher_cards", cards, "--plugins", "test_distill_task", "--out_dir", str(tmp_path / out),
                     "--max_steps", steps, "--warmup_steps", "1", "--batch_seconds", "4", "--crop_seconds", "1.0",
                     "--dropout", "0", "--precision", "fp32", "--seed", "0", *extra])
    return run


def synth(domain, seconds, rng):
    """A short synthetic clip whose spectrum depends on its domain."""
    t = np.arange(int(seconds * SR)) / SR
    if domain == "speech":  # glottal-like harmonics with a gliding f0 and a moving formant
        f0 = rng.uniform(90, 220) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        x = sum(np.sin(h * phase) / h * (1 + np.sin(2 * np.pi * rng.uniform(2, 6) * t + h)) for h in range(1, 12))
    elif domain == "music":  # a few notes
        x = np.zeros_like(t)
        for start in np.arange(0, seconds, 0.25):
            f = 220 * 2 ** (rng.integers(0, 24) / 12)
            env = np.clip((t - start) * 40, 0, 1) * np.exp(-np.clip(t - start, 0, None) * 6) * (t >= start)
            x += env * (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t))
    else:  # bursts of coloured noise
        noise = rng.standard_normal(len(t))
        k = rng.integers(2, 30)
        x = np.convolve(noise, np.ones(k) / k, mode="same") * (np.sin(2 * np.pi * rng.uniform(1, 5) * t) > 0)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.2, 0.8)
    return x.astype(np.float32)


def make_data_dir(path, n_per_domain=4, seed=0, seconds=(0.8, 1.6)):
    """A data dir of synthetic speech / audio / music wavs with utt2domain and utt2num_samples."""
    rng = np.random.default_rng(seed)
    wav_dir = os.path.join(os.fspath(path) + "_wav")
    os.makedirs(wav_dir, exist_ok=True)
    wav, dom, num = {}, {}, {}
    for domain in ("speech", "audio", "music"):
        for i in range(n_per_domain):
            utt = f"{domain}_{seed}_{i:02d}"
            x = synth(domain, rng.uniform(*seconds), rng)
            p = os.path.join(wav_dir, utt + ".wav")
            soundfile.write(p, x, SR, subtype="FLOAT")
            wav[utt], dom[utt], num[utt] = os.path.abspath(p), domain, len(x)
    DataDir(wav, utt2domain=dom, utt2num_samples=num).write(path)
    return os.fspath(path)


def full_batch(data_dir):
    """An uncropped batch of whole utterances (what EvalPipeline yields), from the data dir."""
    from usad2.data.pipeline import EvalPipeline

    return next(iter(EvalPipeline(data_dir, batch_seconds=1000)))


@pytest.fixture
def cards(tmp_path):
    return write_cards(str(tmp_path / "cards"))


def _specs(cards_dir, num_layers=4, k=4):
    return [stage1_spec(load_card(n, cards_dir), num_layers, k) for n in TINY_TEACHERS]


def _task(specs, model, **kw):
    return DistillTask(specs, model.timing.rate, model.timing.offset, **kw)


def test_tiny_teacher_is_deterministic_and_padding_free(cards):
    teacher = build_teacher("tiny_speech", card_dirs=cards)
    rng = np.random.default_rng(0)
    a, b = torch.from_numpy(synth("speech", 1.0, rng)), torch.from_numpy(synth("speech", 0.6, rng))
    wavs = torch.zeros(2, a.shape[0])
    wavs[0], wavs[1, :b.shape[0]] = a, b
    outs, lengths = teacher.extract(wavs, [a.shape[0], b.shape[0]], [1, 3])
    assert lengths.tolist() == [1 + (16000 - 400) // 640, 1 + (b.shape[0] - 400) // 640]
    alone, _ = teacher.extract(b[None], [b.shape[0]], [1, 3])
    n = int(lengths[1])
    assert torch.equal(outs[1][1, :n], alone[1][0, :n])
    assert outs[0].shape[-1] == 16 and outs[1].shape[-1] == 12


def test_student_timing_matches_fbank_and_strides():
    model = Usad2Model(get_preset("tiny"))
    rate, offset, step = model.timing
    assert rate == 50 and isinstance(rate, fractions.Fraction) and offset == pytest.approx(0.0125) and step == 320
    assert model.frame_rate == 50.0 and model.downsample_rate == 320
    rate25, offset25, step25 = frame_timing(get_preset("xlarge"), model.fbank_config)
    assert (rate25, offset25, step25) == (25, offset, 640)


def test_stage_specs_map_layers(cards):
    speech = load_card("tiny_speech", cards)
    music = load_card("tiny_music", cards)
    assert stage1_spec(speech, 4, 4).pairs == [(1, 1), (2, 2), (4, 3)]  # explicit 3 layers
    assert stage1_spec(music, 12, 4).pairs == [(3, 1), (6, 2), (9, 3), (12, 5)]
    assert stage2_spec(music, 12).pairs == [(12, 5)]
    assert stage2_spec(music, 12, 6).pairs == [(6, 5)]
    assert stage2_spec(music, 12, -2).pairs == [(11, 5)]
    with pytest.raises(ConfigError, match="outside the student's 12 layers"):
        stage2_spec(music, 12, 13)


def test_crop_frame_range_by_hand():
    # 25 Hz teacher (640-sample hop), crop of 1 s starting at 0.5 s of a 3 s utterance
    assert crop_frame_range(8000, 16000, 48000, 74, 25) == (12, 25)   # round(12.5)=12 (banker's), 25 frames
    assert crop_frame_range(9600, 16000, 48000, 74, 25) == (15, 25)
    # crop reaching the end takes every remaining frame
    assert crop_frame_range(32000, 16000, 48000, 74, 25) == (50, 24)
    # uncropped: everything
    assert crop_frame_range(0, 48000, 48000, 74, 25) == (0, 74)
    # exact fraction rate (basic-pitch 22050/256 Hz): 1 s into the file
    first, count = crop_frame_range(16000, 8000, 48000, 258, fractions.Fraction(22050, 256))
    assert first == round(22050 / 256) == 86 and count == round(0.5 * 22050 / 256)


def test_domain_weights_in_task(cards):
    model = Usad2Model(get_preset("tiny"))
    task = _task(_specs(cards), model, omega=10.0)
    w = task.weights(["speech", "music", "unknown"])
    assert torch.allclose(w[0], torch.tensor([10 / 12, 1 / 12, 1 / 12]))
    assert torch.allclose(w[1], torch.tensor([1 / 12, 1 / 12, 10 / 12]))
    assert torch.allclose(w[2], torch.full((3,), 1 / 3))
    with pytest.raises(ConfigError, match="'noise'"):
        task.weights(["noise"])


def test_stage2_weights_whisper_and_any(tmp_path):
    d = write_cards(str(tmp_path / "c"), ["tiny_speech"])
    card = yaml.safe_load(open(os.path.join(d, "tiny_speech.yaml")))
    card.update(name="tiny_any", domain="any")
    yaml.safe_dump(card, open(os.path.join(d, "tiny_any.yaml"), "w"))
    model = Usad2Model(get_preset("tiny"))
    specs = [stage2_spec(load_card(n, d), 4) for n in ("tiny_speech", "tiny_any")]
    task = _task(specs, model, omega=10.0)
    w = task.weights(["speech", "audio"])
    assert torch.allclose(w, torch.tensor([[1.0, 1.0], [0.1, 1.0]]))


def _loss_by_hand(task, preds, lengths, targets, batch):
    """Σ_m mean_k Σ w ℓ / N from the per-head terms (independent re-computation)."""
    w = task.weights(batch.domains)
    total = 0.0
    for m, key, values, mask in task.head_terms(preds, lengths, targets, batch):
        total += float((values * w[:, m:m + 1]).sum() / mask.sum()) / len(task.specs[m].pairs)
    return total


def test_online_and_offline_targets_give_equal_loss(tmp_path, cards):
    from usad2.targets.extract import run_extraction
    from usad2.audio.io import load_audio

    data = make_data_dir(tmp_path / "dev", n_per_domain=2)
    batch = full_batch(data)
    torch.manual_seed(0)
    model = Usad2Model(get_preset("tiny", dropout=0.0, attention_dropout=0.0)).eval()
    specs = _specs(cards)
    dmodel = DistillModel(model, specs).eval()
    task = _task(specs, model)
    teachers = {s.name: build_teacher(s.name, card_dirs=cards) for s in specs}
    layers = {s.name: s.teacher_layers for s in specs}
    from usad2.data.datadir import load_data_dir

    dd = load_data_dir(data)
    for s in specs:
        loaders = [(u, (lambda u=u: load_audio(dd.source(u).path, name=u))) for u in dd.utt_ids]
        assert run_extraction(loaders, teachers[s.name].card, lambda s=s: teachers[s.name],
                              str(tmp_path / "targets" / s.name / "dev"), layers[s.name], nj=2, progress=False)
    online = OnlineTargets(teachers, layers).get(batch)
    offline = OfflineTargets(str(tmp_path / "targets"), "dev", {s.name: load_card(s.name, cards) for s in specs},
                             layers).get(batch)
    for s in specs:
        assert torch.equal(online[s.name][1], offline[s.name][1])
        for a, b in zip(online[s.name][0], offline[s.name][0]):
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-3 * float(a.abs().max()))
    with torch.no_grad():
        preds, lengths = dmodel(batch.wavs, batch.lengths)
        loss_on, metrics_on, _ = task.loss(preds, lengths, online, batch)
        loss_off, metrics_off, _ = task.loss(preds, lengths, offline, batch)
    assert float(loss_on) == pytest.approx(float(loss_off), rel=1e-3)
    assert metrics_on["loss"] == pytest.approx(_loss_by_hand(task, preds, lengths, online, batch), rel=1e-6)
    assert set(metrics_on) == {"loss"} | {f"loss/{k}" for s in specs for k in s.keys()}


def test_offline_targets_cut_at_crop_match_online_on_the_crop_grid(tmp_path, cards):
    """A crop starting on the teacher's hop grid gives the online frames, except near the edges."""
    from usad2.targets.store import ShardWriter, merge_shards
    import json

    teacher = build_teacher("tiny_speech", card_dirs=cards)
    rng = np.random.default_rng(3)
    wave = torch.from_numpy(synth("speech", 2.0, rng))
    full, n = teacher.extract(wave[None], [wave.shape[0]], [1, 2, 3])
    out = tmp_path / "t" / "tiny_speech" / "set"
    os.makedirs(out / "shards" / "1")
    w = ShardWriter(str(out / "shards" / "1"), str(out / "shards" / "1"), [1, 2, 3], "float32")
    w.write("u1", [o[0, :int(n[0])].numpy() for o in full])
    w.close()
    merge_shards(str(out), [1, 2, 3], 1)
    (out / "meta.json").write_text(json.dumps({"layers": [1, 2, 3], "frame_rate": "25"}))
    start, length = 640 * 5, 640 * 10 + 400 - 640  # frames 5..14 of the full utterance
    crop = wave[start:start + length]
    batch = types.SimpleNamespace(utts=["u1"], wavs=crop[None], lengths=torch.tensor([length]),
                                  crop_starts=torch.tensor([start]), full_lengths=torch.tensor([wave.shape[0]]),
                                  domains=["speech"])
    spec = stage1_spec(load_card("tiny_speech", cards), 4)
    offline = OfflineTargets(str(tmp_path / "t"), "set", {"tiny_speech": load_card("tiny_speech", cards)},
                             {"tiny_speech": spec.teacher_layers}).get(batch)
    online = OnlineTargets({"tiny_speech": teacher}, {"tiny_speech": spec.teacher_layers}).get(batch)
    t_on = int(online["tiny_speech"][1][0])
    assert int(offline["tiny_speech"][1][0]) == round(length * 25 / SR)
    for k, a, b in zip(spec.teacher_layers, online["tiny_speech"][0], offline["tiny_speech"][0]):
        assert torch.equal(b[0], full[k - 1][0, 5:5 + b.shape[1]])
        m = min(t_on, b.shape[1])
        assert torch.allclose(a[0, :m], b[0, :m], atol=1e-5)


def test_target_stats_match_numpy_over_valid_frames():
    x = torch.randn(2, 5, 3) * torch.tensor([1.0, 10.0, 0.0]) + torch.tensor([0.0, 5.0, 2.0])
    lengths = torch.tensor([5, 2])
    stats = TargetStats()
    stats.add("t:L1", x, lengths)
    st = stats.finish()["t:L1"]
    valid = torch.cat([x[0, :5], x[1, :2]]).numpy().astype(np.float64)
    assert np.allclose(st["mean"].numpy(), valid.mean(0), atol=1e-5)
    assert np.allclose(st["std"][:2].numpy(), valid.std(0)[:2], rtol=1e-4)
    assert float(st["std"][2]) > 0  # a constant dimension gets a floor, not zero
    z = stats.normalise("t:L1", x)
    assert torch.allclose(stats.denormalise("t:L1", z), x, atol=1e-4)


def mean_predictions(task, pred_lengths, num_frames):
    """A baseline predictor: each target dimension's training mean at every student frame."""
    assert task.stats is not None and task.stats.stats, "the mean predictor needs target statistics"
    b = pred_lengths.shape[0]
    return {key: task.stats.stats[key]["mean"].to(pred_lengths.device).expand(b, num_frames, -1)
            for _, _, key in task.heads}


def test_eval_accumulator_equals_batch_loss_and_mean_predictor(cards, tmp_path):
    data = make_data_dir(tmp_path / "d", n_per_domain=1)
    batch = full_batch(data)
    model = Usad2Model(get_preset("tiny")).eval()
    specs = _specs(cards)
    dmodel = DistillModel(model, specs).eval()
    task = _task(specs, model)
    targets = OnlineTargets({s.name: build_teacher(s.name, card_dirs=cards) for s in specs},
                            {s.name: s.teacher_layers for s in specs}).get(batch)
    with torch.no_grad():
        preds, lengths = dmodel(batch.wavs, batch.lengths)
        _, metrics, _ = task.loss(preds, lengths, targets, batch)
    acc = EvalAccumulator(task)
    acc.add(preds, lengths, targets, batch)
    assert acc.result()["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    task.stats = TargetStats()
    for s in specs:
        for key, out in zip(s.keys(), targets[s.name][0]):
            task.stats.add(key, out, targets[s.name][1])
    task.stats.finish()
    means = mean_predictions(task, lengths, preds[next(iter(preds))].shape[1])
    acc = EvalAccumulator(task)
    acc.add(means, lengths, targets, batch)
    base = acc.result()["loss"]
    assert 0 < base < 10 and math.isfinite(base)


def test_alignment_error_names_teacher_and_utterance(cards, tmp_path):
    model = Usad2Model(get_preset("tiny"))
    specs = _specs(cards)
    task = _task(specs, model)
    b, t = 1, 50
    preds = {k: torch.zeros(b, t, specs[m].widths[specs[m].pairs[j][1]]) for m, j, k in task.heads}
    targets = {s.name: ([torch.zeros(b, 5, s.widths[tl]) for tl in s.teacher_layers], torch.tensor([5]))
               for s in specs}
    batch = types.SimpleNamespace(utts=["speech_x"], domains=["speech"])
    with pytest.raises(AlignmentError, match="tiny_speech: utterance speech_x"):
        task.loss(preds, torch.tensor([t]), targets, batch)


def test_task_needs_teachers():
    model = Usad2Model(get_preset("tiny"))
    with pytest.raises(ConfigError, match="no teachers"):
        _task([], model)


# ---- probability layers as log-odds ----------------------------------------------------------------
class _FixedProvider:
    """A target provider answering fixed tensors (the wrapper's input contract)."""

    mode = "offline"

    def __init__(self, answer):
        self.answer = answer

    def get(self, batch, device="cpu"):
        return {name: (list(outs), lengths) for name, (outs, lengths) in self.answer.items()}


def _prob_spec(name, layers, prob_layers):
    from usad2.distill.task import TeacherSpec

    return TeacherSpec(name, "music", fractions.Fraction(25), 0.0, [(k, k) for k in layers],
                       {k: 3 for k in layers}, tuple(prob_layers))


def test_probability_layers_become_log_odds_and_others_stay():
    from usad2.distill.target_sources import LogitTargets, probability_to_logit, with_probability_targets

    p = torch.tensor([[[0.0, 0.5, 1.0], [1e-3, 0.2, 0.9]]])
    dense = torch.tensor([[[-3.0, 0.5, 7.0], [1.0, 2.0, 3.0]]])
    lengths = torch.tensor([2])
    specs = [_prob_spec("pitchy", [1, 2], [2]), _prob_spec("plain", [1], [])]
    provider = _FixedProvider({"pitchy": ([dense, p], lengths), "plain": ([p], lengths)})
    wrapped = with_probability_targets(provider, specs, "logit")
    assert isinstance(wrapped, LogitTargets)
    out = wrapped.get(None)
    assert torch.equal(out["pitchy"][0][0], dense) and torch.equal(out["plain"][0][0], p)
    z = out["pitchy"][0][1]
    bound = math.log((1 - 1e-4) / 1e-4)
    assert z[0, 0].tolist() == pytest.approx([-bound, 0.0, bound], abs=1e-3)
    assert z[0, 1].tolist() == pytest.approx([math.log(1e-3 / (1 - 1e-3)), math.log(0.25), math.log(9.0)], rel=1e-4)
    assert torch.sigmoid(probability_to_logit(p[0, 1])).tolist() == pytest.approx(p[0, 1].tolist(), rel=1e-4)
    # raw mode, or no probability layer among the distilled ones: the provider itself
    assert with_probability_targets(provider, specs, "raw") is provider
    assert with_probability_targets(provider, [specs[1]], "logit") is provider
    with pytest.raises(ConfigError, match="--probability_targets must be one of"):
        with_probability_targets(provider, specs, "probit")


def test_card_probability_layers_are_checked_and_reach_the_spec():
    card = load_card("basic_pitch")
    assert card.probability_layers == [1, 2, 3]
    assert stage1_spec(card, 4).probability_layers == (1, 2, 3)
    plain = load_card("yamnet")
    assert plain.probability_layers is None and "probability_layers" not in plain.to_dict()
    d = dict(card.to_dict(), probability_layers=[4])
    from usad2.teachers.base import TeacherError

    with pytest.raises(TeacherError, match=r"probability_layers \[4\] are not layers 1..3"):
        TeacherCard.from_dict(d, "bad.yaml")


def test_bce_heads_skip_standardisation_and_report_posteriors():
    """--probability_targets bce: those heads' loss is the Bernoulli KL on raw posteriors."""
    spec = _prob_spec("pitchy", [1, 2], [2])
    stats = TargetStats({k: {"mean": torch.full((3,), 5.0), "std": torch.full((3,), 2.0)} for k in spec.keys()})
    task = DistillTask([spec], 25, stats=stats, probability_targets="bce")
    assert task.bce_keys == {spec.keys()[1]}
    p = torch.rand(1, 4, 3) * 0.9 + 0.05
    dense = torch.randn(1, 4, 3)
    lengths = torch.tensor([4])
    preds = {spec.keys()[0]: torch.zeros(1, 4, 3), spec.keys()[1]: torch.logit(p)}
    batch = types.SimpleNamespace(utts=["u"], domains=["music"])
    terms = {key: values for _, key, values, _ in task.head_terms(preds, lengths, {"pitchy": ([dense, p], lengths)}, batch)}
    assert terms[spec.keys()[1]].abs().max() < 1e-5  # exact posteriors, no standardisation in the way
    assert terms[spec.keys()[0]].min() > 0
    orig = denormalise_preds(task, preds)
    assert torch.allclose(orig[spec.keys()[1]], p, atol=1e-6)  # posteriors in original units
    assert torch.allclose(orig[spec.keys()[0]], torch.full((1, 4, 3), 5.0))
    evaluated = {key: v for _, key, v, _ in task.head_terms(orig, lengths, {"pitchy": ([dense, p], lengths)}, batch,
                                                            normalised=False)}
    assert evaluated[spec.keys()[1]].abs().max() < 1e-4
    raw = DistillTask([spec], 25, stats=stats)
    assert raw.bce_keys == set() and torch.equal(denormalise_preds(raw, preds)[spec.keys()[1]],
                                                 stats.denormalise(spec.keys()[1], preds[spec.keys()[1]]))


def test_stage2_keeping_stage1_teachers_merges_a_teacher_of_both_stages():
    """--drop_stage1 false with yamnet in both lists: one yamnet spec, its K layers plus its last."""
    from usad2.distill.config import TrainConfig
    from usad2.distill.build import teacher_specs

    cfg = TrainConfig(train_dir="t", out_dir="o", teachers=["speech_embedding", "yamnet"],
                      stage2_teachers=["resemblyzer", "yamnet"], drop_stage1=False)
    specs = teacher_specs(cfg, 4)
    assert [s.name for s in specs] == ["speech_embedding", "yamnet", "resemblyzer"]
    yam = specs[1]
    assert yam.teacher_layers == [2, 4, 6, 7] and yam.pairs[-1] == (4, 7) and yam.widths[7] == 521
    assert [s.name for s in teacher_specs(dataclasses.replace(cfg, drop_stage1=True), 4)] == ["resemblyzer", "yamnet"]
    with pytest.raises(ConfigError, match="listed twice"):
        teacher_specs(dataclasses.replace(cfg, teachers=["yamnet", "yamnet"]), 4)


def test_mse_heads_use_squared_error_and_one_scale_per_layer():
    """--probability_targets mse: squared error on posteriors scaled by the layer's RMS std."""
    spec = _prob_spec("pitchy", [1, 2], [2])
    task = DistillTask([spec], 25, probability_targets="mse")
    dense_key, prob_key = spec.keys()
    assert task.squared_keys == {prob_key} and task.bce_keys == set()
    stats = TargetStats({k: {"mean": torch.zeros(3), "std": torch.tensor([0.01, 0.1, 1.0])} for k in spec.keys()})
    stats.pool_std(task.squared_keys)
    rms = math.sqrt((0.01 ** 2 + 0.1 ** 2 + 1.0) / 3)
    assert stats.stats[prob_key]["std"].tolist() == pytest.approx([rms] * 3, rel=1e-6)
    assert stats.stats[dense_key]["std"].tolist() == pytest.approx([0.01, 0.1, 1.0])
    stats.pool_std(task.squared_keys)  # idempotent: a resumed run pools again
    assert stats.stats[prob_key]["std"].tolist() == pytest.approx([rms] * 3, rel=1e-6)
    task.stats = stats
    target = torch.tensor([[[0.0, 0.0, 2 * rms]]])
    lengths = torch.tensor([1])
    preds = {dense_key: torch.zeros(1, 1, 3), prob_key: torch.tensor([[[0.0, 0.0, 1.0]]])}
    batch = types.SimpleNamespace(utts=["u"], domains=["music"])
    terms = {k: float(v[0, 0]) for _, k, v, _ in task.head_terms(preds, lengths, {"pitchy": ([target, target], lengths)}, batch)}
    # standardised target (0, 0, 2), prediction (0, 0, 1): squared error 1/3, cosine 1
    assert terms[prob_key] == pytest.approx(1 / 3 - math.log(1 / (1 + math.exp(-1))), rel=1e-5)
