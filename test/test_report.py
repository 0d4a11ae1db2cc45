"""The stage-9 report: RESULTS.md table, results.json copy, PNG plots, training-log reading."""
import json
import math

import pytest

from usad2.bin import report as report_bin
from usad2.errors import ConfigError
from usad2.report import tables
from usad2.report.trainlog import read_train_log

RESULTS = {
    "student": {"word": 0.5, "pitch_class": 0.75, "_domain_mean": {"music": 0.75, "speech": 0.5}, "_mean": 0.625},
    "yamnet": {"word": 0.25, "pitch_class": 0.5, "_domain_mean": {"music": 0.5, "speech": 0.25}, "_mean": 0.375},
    "fbank": {"word": 0.125, "pitch_class": 0.875, "_domain_mean": {"music": 0.875, "speech": 0.125}, "_mean": 0.5},
    "random_init": {"word": 0.1, "pitch_class": 0.2, "_domain_mean": {"music": 0.2, "speech": 0.1}, "_mean": 0.15},
}


def _detail(domain, weights, names):
    return {"domain": domain, "metric": "accuracy", "chance": 0.25, "layer_weights": weights, "layer_names": names,
            "score": 0.5, "test": {"accuracy": 0.5}, "hparams": {"lr": 0.01}}


DETAILS = {
    "student": {"word": _detail("speech", [0.1, 0.7, 0.2], ["frontend", "L1", "L2"]),
                "pitch_class": _detail("music", [0.6, 0.2, 0.2], ["frontend", "L1", "L2"])},
    "yamnet": {"word": _detail("speech", [0.5, 0.5], ["block4", "embedding"]),
               "pitch_class": _detail("music", [0.9, 0.1], ["block4", "embedding"])},
    "fbank": {"word": _detail("speech", [1.0], ["fbank"]), "pitch_class": _detail("music", [1.0], ["fbank"])},
    "random_init": {"word": _detail("speech", [0.3, 0.3, 0.4], ["frontend", "L1", "L2"]),
                    "pitch_class": _detail("music", [0.3, 0.3, 0.4], ["frontend", "L1", "L2"])},
}


@pytest.fixture
def probe_dir(tmp_path):
    d = tmp_path / "probe"
    d.mkdir()
    (d / "results.json").write_text(json.dumps(RESULTS))
    (d / "details.json").write_text(json.dumps(DETAILS))
    return d


def _train_log(path):
    with open(path, "w") as f:
        for step in range(1, 21):
            rec = {"step": step, "loss": 4.0 / step, "lr": 1e-3, "loss/yamnet:L2": 2.0 / step,
                   "loss/yamnet:L4": 4.0 / step, "loss/basic_pitch:L1": 1.0 + 1.0 / step}
            if step % 10 == 0:
                rec["dev/loss"] = 5.0 / step
            f.write(json.dumps(rec) + "\n")
        f.write('{"step": 21, "lo')          # a line cut by a kill -9


def test_model_order_puts_students_first_and_baselines_last():
    assert tables.order_models(["fbank", "yamnet", "random_init", "student", "student_heads", "basic_pitch"]) == \
        ["student", "student_heads", "yamnet", "basic_pitch", "fbank", "random_init"]
    # the teachers_concat topline comes after the teachers (results.json sorts names), before the baselines
    assert tables.order_models(["basic_pitch", "fbank", "random_init", "student", "teachers_concat", "yamnet"]) == \
        ["student", "basic_pitch", "yamnet", "teachers_concat", "fbank", "random_init"]


def test_results_table_rows_and_bold_best():
    text = tables.results_table(RESULTS, DETAILS)
    lines = text.splitlines()
    assert lines[0] == "| task | domain | metric | chance | student | yamnet | fbank | random_init |"
    assert "| pitch_class | music | accuracy | 25.0 | 75.0 | 50.0 | **87.5** | 20.0 |" in lines
    assert "| word | speech | accuracy | 25.0 | **50.0** | 25.0 | 12.5 | 10.0 |" in lines
    assert "| **speech mean** | speech |  | - | **50.0** | 25.0 | 12.5 | 10.0 |" in lines
    assert lines[-1] == "| **overall mean** |  |  | - | **62.5** | 37.5 | 50.0 | 15.0 |"


def test_train_log_per_teacher_curves(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _train_log(path)
    curves = read_train_log(str(path))
    assert curves["total"][0] == (1, 4.0) and len(curves["total"]) == 20
    assert curves["teachers"]["yamnet"][1] == (2, pytest.approx(1.5))     # mean of 1.0 and 2.0
    assert curves["teachers"]["basic_pitch"][-1] == (20, pytest.approx(1.05))
    assert curves["dev"] == [(10, 0.5), (20, 0.25)]


def test_report_writes_results_md_json_and_plots(probe_dir, tmp_path):
    train = tmp_path / "exp"
    train.mkdir()
    _train_log(train / "metrics.jsonl")
    out = tmp_path / "report"
    assert report_bin.main(["--probe_dir", str(probe_dir), "--train_log", str(train), "--out_dir", str(out)]) == 0
    md = (out / "RESULTS.md").read_text()
    assert tables.results_table(RESULTS, DETAILS, tables.order_models(RESULTS)) in md
    assert "| word | L1 (0.70) | block4 (0.50) | fbank (1.00) | L2 (0.40) |" in md
    assert "| yamnet | 3.0000 (step 1) | 0.1500 (step 20) |" in md
    assert json.loads((out / "results.json").read_text()) == RESULTS
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["layer_weights_random_init.png", "layer_weights_student.png", "layer_weights_yamnet.png",
                     "task_scores.png", "train_loss.png"]
    for name in plots:
        data = (out / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"](plots/{name})" in md


def test_report_without_training_log_and_missing_probe(probe_dir, tmp_path):
    out = tmp_path / "r"
    report_bin.make_report(str(probe_dir), str(out), train_log=str(tmp_path / "nothing"))
    md = (out / "RESULTS.md").read_text()
    assert "No per-step training log" in md and not (out / "plots" / "train_loss.png").exists()
    with pytest.raises(ConfigError, match="results.json: not found"):
        report_bin.make_report(str(tmp_path / "absent"), str(out))


def test_nan_scores_show_as_dash():
    res = {"student": {"word": math.nan, "_domain_mean": {"speech": math.nan}, "_mean": math.nan}}
    det = {"student": {"word": _detail("speech", [1.0], ["L1"])}}
    assert "| word | speech | accuracy | 25.0 | - |" in tables.results_table(res, det)


def _fidelity_doc(checkpoint, ev):
    def numbers(ev_orig, ev_std, cos_orig, cos_std):
        return {"orig": {"ev": ev_orig, "cos": cos_orig}, "std": {"ev": ev_std, "cos": cos_std}}

    heads = [{"head": "yamnet:L2", "teacher": "yamnet", "teacher_layer": 2, "student_layer": 1, "frames": 500,
              "dims": 256, "student": numbers(ev, ev - 0.1, 0.9, 0.6), "mean": numbers(-0.01, -0.02, 0.8, 0.0)},
             {"head": "basic_pitch:L3", "teacher": "basic_pitch", "teacher_layer": 3, "student_layer": 2,
              "frames": 800, "dims": 88, "student": numbers(0.01, -0.05, 0.3, 0.1),
              "mean": numbers(-0.001, -0.002, 0.2, 0.0)}]
    return {"checkpoint": checkpoint, "step": 40, "dev_dir": "dump/raw/dev", "utterances": 12,
            "targets": "offline from `dump/targets`", "standardisation": "the checkpoint's TargetStats",
            "mean_predictor": "training means (the checkpoint's TargetStats)", "heads": heads}


def test_report_shows_teachers_concat_and_fidelity_tables(probe_dir, tmp_path):
    results = dict(RESULTS, teachers_concat={"word": 0.75, "pitch_class": 0.625, "_mean": 0.6875,
                                             "_domain_mean": {"music": 0.625, "speech": 0.75}})
    names = ["speech_embedding/L1", "speech_embedding/L2", "yamnet/L1"]
    details = dict(DETAILS, teachers_concat={"word": _detail("speech", [0.3, 0.7, 1.0], names),
                                             "pitch_class": _detail("music", [0.6, 0.4, 1.0], names)})
    (probe_dir / "results.json").write_text(json.dumps(results, sort_keys=True))
    (probe_dir / "details.json").write_text(json.dumps(details, sort_keys=True))
    fids = []
    for stage, ev in (("exp/a", 0.5), ("exp/a_plus", 0.25)):
        d = tmp_path / stage.replace("/", "_") / "fidelity"
        d.mkdir(parents=True)
        (d / "fidelity.json").write_text(json.dumps(_fidelity_doc(f"{stage}/checkpoints/last.pt", ev)))
        fids += ["--fidelity", str(d)]
    out = tmp_path / "report"
    assert report_bin.main(["--probe_dir", str(probe_dir), "--out_dir", str(out), *fids]) == 0
    md = (out / "RESULTS.md").read_text()
    # the topline is a column like any model: after the teachers, before the baselines
    assert "| task | domain | metric | chance | student | yamnet | teachers_concat | fbank | random_init |" in md
    assert "| word | speech | accuracy | 25.0 | 50.0 | 25.0 | **75.0** | 12.5 | 10.0 |" in md
    assert "| word | L1 (0.70) | block4 (0.50) | yamnet/L1 (1.00) | fbank (1.00) | L2 (0.40) |" in md
    assert (out / "plots" / "layer_weights_teachers_concat.png").is_file()
    # one fidelity table per checkpoint, with how to read it
    section = md[md.index("## Teacher-layer fidelity of the prediction heads"):]
    assert "How to read" in section and "mean predictor" in section
    assert section.index("### `exp/a/checkpoints/last.pt`") < section.index("### `exp/a_plus/checkpoints/last.pt`")
    assert "| yamnet | L2 | 1 | 500 | 0.500 | 0.400 | 0.900 | 0.600 | -0.010 | -0.020 | 0.800 | yes |" in section
    assert "| yamnet | L2 | 1 | 500 | 0.250 | 0.150 | 0.900 | 0.600 | -0.010 | -0.020 | 0.800 | yes |" in section
    assert section.count("| basic_pitch | L3 | 2 | 800 | 0.010 | -0.050 | 0.300 | 0.100 | -0.001 | -0.002 | 0.200 | "
                         "**no** |") == 2
    with pytest.raises(ConfigError, match="fidelity.json: not found \\(run usad2.bin.fidelity first\\)"):
        report_bin.make_report(str(probe_dir), str(out), fidelity_dirs=[str(tmp_path / "none")])


def _domain_dir(path):
    """4 utterances: labels, posteriors (3 of 4 agree) and true mixture shares."""
    from usad2.data.datadir import DataDir
    utts = ["a", "b", "c", "d"]
    DataDir({u: f"/audio/{u}.wav" for u in utts},
            utt2domain={"a": "speech", "b": "speech", "c": "music", "d": "audio"},
            utt2domain_post={"a": (0.9, 0.05, 0.05), "b": (0.2, 0.1, 0.7), "c": (0.0, 0.2, 0.8), "d": (0.3, 0.6, 0.1)},
            utt2domain_mix={"a": (1.0, 0.0, 0.0), "b": (0.6, 0.0, 0.4), "c": (0.0, 0.0, 1.0), "d": (0.5, 0.5, 0.0)},
            ).write(path)
    return str(path)


def test_report_domain_confusion_and_effective_weight_histograms(probe_dir, tmp_path):
    import torch
    data = _domain_dir(tmp_path / "train")
    teachers = [{"name": "speech_embedding", "domain": "speech"}, {"name": "yamnet", "domain": "audio"},
                {"name": "basic_pitch", "domain": "music"}]
    ckpt = tmp_path / "last.pt"
    torch.save({"config": {"train_dir": data, "omega": 10.0, "any_weight": 1.0, "domain_source": "infer"},
                "teachers": teachers}, ckpt)
    out = tmp_path / "report"
    assert report_bin.main(["--probe_dir", str(probe_dir), "--out_dir", str(out), "--domains", data,
                            "--domains", str(tmp_path / "no_posteriors"), "--checkpoint", str(ckpt)]) == 0
    md = (out / "RESULTS.md").read_text()
    assert "| speech | 1 | 0 | 1 | 0.500 |" in md and "| music | 0 | 0 | 1 | 1.000 |" in md
    assert "| audio | 0 | 1 | 0 | 1.000 |" in md
    assert "inferred hard domain with the label: **0.750**" in md
    # TV: a 0.1, b 0.4, c 0.2, d 0.2 -> 0.225
    assert "mean total-variation distance to the posterior 0.225" in md
    # speech_embedding: Σ_d p(d) w(d) with 10/12 on speech, 1/12 elsewhere
    w = [(10 * p + (1 - p)) / 12 for p in (0.9, 0.2, 0.0, 0.3)]
    assert f"| speech_embedding | speech | {sum(w) / 4:.3f} | {min(w):.3f} |" in md
    png = (out / "plots" / "teacher_weights.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and "](plots/teacher_weights.png)" in md
    # no posteriors, no checkpoint: no domain section at all
    report_bin.make_report(str(probe_dir), str(tmp_path / "plain"), domain_dirs=[str(tmp_path / "none")])
    assert "## Inferred domains" not in (tmp_path / "plain" / "RESULTS.md").read_text()


def test_report_llm_eval_section_ranks_both_protocols(probe_dir, tmp_path):
    """--llm_eval DIR: probe mean next to LLM-eval mean, ranks by each, outside rate, caption chrF."""
    llm = tmp_path / "llm_eval"
    llm.mkdir()
    entry = {"student": (0.3, 0.02, 0.61), "yamnet": (0.4, 0.0, 0.55), "fbank": (0.1, 0.04, 0.5)}
    results, details = {}, {}
    for model, (mean, outside, caption) in entry.items():
        results[model] = {"word": mean, "caption": caption, "_domain_mean": {"speech": mean, "open-ended": caption},
                          "_mean": mean, "_outside_label_set": outside}
        details[model] = {"word": {"domain": "speech", "metric": "exact_match", "chance": 0.1, "score": mean,
                                   "steps": 300, "tokens_per_second": 5.0},
                          "caption": {"domain": "open-ended", "metric": "chrf", "chance": None, "score": caption,
                                      "steps": 300, "tokens_per_second": 5.0}}
    (llm / "results.json").write_text(json.dumps(results))
    (llm / "details.json").write_text(json.dumps(details))
    out = tmp_path / "report"
    assert report_bin.main(["--probe_dir", str(probe_dir), "--out_dir", str(out), "--llm_eval", str(llm)]) == 0
    text = (out / "RESULTS.md").read_text()
    assert "## LLM-based evaluation" in text and "Training steps per model: 300" in text
    # probe means 0.625 / 0.375 / 0.5 rank student, fbank, yamnet; the LLM ranks yamnet, student, fbank
    assert "| student | 62.5 | 30.0 | 1 / 2 | 2.0 | 61.0 |" in text
    assert "| yamnet | 37.5 | 40.0 | 3 / 1 | 0.0 | 55.0 |" in text
    assert "| fbank | 50.0 | 10.0 | 2 / 3 | 4.0 | 50.0 |" in text
    assert "| word | speech | exact_match | 10.0 | 30.0 | **40.0** | 10.0 |" in text
    # no folder, or one without results.json: no section
    assert report_bin.main(["--probe_dir", str(probe_dir), "--out_dir", str(out), "--llm_eval", str(tmp_path)]) == 0
    assert "LLM-based evaluation" not in (out / "RESULTS.md").read_text()
