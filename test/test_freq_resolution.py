"""Frequency resolution of the front end and its study command (usad2.studies.freq_resolution)."""
import json

import numpy as np
import pytest
import torch
import torchaudio

from test_probe import _make_corpus
from usad2.errors import ConfigError
from usad2.models.presets import get_preset
from usad2.studies import freq_resolution as F


def test_mel_centres_match_kaldi_filterbank():
    _, centres = torchaudio.compliance.kaldi.get_mel_banks(128, 512, 16000.0, 20.0, 0.0, 100.0, -500.0, 1.0)
    assert np.allclose(F.mel_centres(128), centres.numpy().ravel(), rtol=1e-5)
    # the analytic bin width is the spacing of neighbouring centres
    c = F.mel_centres(128)
    i = int(np.argmin(abs(c - 500)))
    assert F.bin_width_hz(c[i]) == pytest.approx(c[i + 1] - c[i], rel=0.02)


def test_table_numbers_at_100_250_500_1000_hz():
    rows = {r["freq_hz"]: r for r in F.resolution_table()}
    # 128 bins over 20-8000 Hz: 21.8 mel per bin -> 15.5 Hz at 100 Hz (2.5 semitones), 32.8 Hz at 1 kHz
    assert rows[100]["mel_bin_hz"] == pytest.approx(15.45, abs=0.05)
    assert rows[100]["mel_bin_semitones"] == pytest.approx(2.49, abs=0.01)
    assert rows[250]["mel_bin_semitones"] == pytest.approx(1.23, abs=0.01)
    assert rows[1000]["mel_bin_semitones"] == pytest.approx(0.56, abs=0.01)
    for r in rows.values():   # freq_stride 2 keeps every other row: twice the Hz, ~twice the semitones
        assert r["row_semitones_stride2"] == pytest.approx(F.semitones(r["freq_hz"], 2 * r["mel_bin_hz"]))
        assert 1.8 * r["row_semitones_stride1"] < r["row_semitones_stride2"] < 2 * r["row_semitones_stride1"]
    assert rows[250]["fft_bin_semitones"] == pytest.approx(12 * np.log2(281.25 / 250))
    assert rows[250]["window_semitones"] == pytest.approx(12 * np.log2(330 / 250))  # 2 * 16000 / 400 = 80 Hz


def test_semitone_floor_is_where_a_row_is_one_semitone():
    for stride in (1, 2):
        f = F.semitone_floor(128, stride)
        assert F.semitones(f, stride * F.bin_width_hz(f)) == pytest.approx(1.0, abs=1e-9)
    assert F.semitone_floor(128, 1) == pytest.approx(337, abs=1)
    assert F.semitone_floor(128, 2) == pytest.approx(1298, abs=1)
    assert F.semitone_floor(256, 1) < F.semitone_floor(128, 1)
    assert F.semitone_floor(8, 2) == float("inf")


def test_f1_preset_keeps_every_mel_row():
    assert get_preset("tiny").subsampled_bins == 64 and get_preset("tiny_f1").subsampled_bins == 128
    assert get_preset("tiny_f1").conv_strides == [(2, 1), (1, 1)]


def test_study_table_only(tmp_path, capsys):
    assert F.main(["--out", str(tmp_path / "f")]) == 0
    md = (tmp_path / "f" / "freq_resolution.md").read_text()
    assert "| 250 | 14.9 | 18.4 | 1.23 | 2.37 |" in md and md in capsys.readouterr().out
    doc = json.loads((tmp_path / "f" / "freq_resolution.json").read_text())
    assert doc["semitone_floor_hz"]["stride2"] == pytest.approx(1298, abs=1) and "weighted" not in doc


def test_study_probes_weighted_and_frontend(tmp_path):
    corpus = tmp_path / "corpus"
    _make_corpus(corpus)
    models = ["fbank", "random_init=tiny", "random_f1=random:tiny_f1"]
    doc = F.study(str(tmp_path / "f"), str(corpus), models, frontend=["random_init", "random_f1"],
                    tasks="pitch_class", probe_kwargs={"max_epochs": 15, "lrs": (1e-2,), "weight_decays": (0.0,)})
    assert set(doc["weighted"]) == {"fbank", "random_init", "random_f1"}
    assert set(doc["frontend"]) == {"random_init", "random_f1"}
    assert doc["weighted"]["fbank"]["pitch_class"] > 0.6      # three tones in noise; chance 1/3
    details = json.loads((tmp_path / "f" / "frontend" / "details.json").read_text())
    assert details["random_f1"]["pitch_class"]["layer_names"][0] == "frontend"
    md = (tmp_path / "f" / "freq_resolution.md").read_text()
    assert "## Probes: frontend output only (layer 0)" in md and "| random_f1 |" in md
    with pytest.raises(ConfigError, match=r"--frontend: \['nope'\]"):
        F.study(str(tmp_path / "g"), str(corpus), models, frontend=["nope"], tasks="pitch_class")
