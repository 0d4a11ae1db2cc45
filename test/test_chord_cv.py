"""The chord-quality cross-validation study reads the probe's feature cache: an informative layer
is read out well above chance, a random one at chance, and a missing cache entry is named."""
import numpy as np
import pytest

from usad2.data.datadir import DataDir
from usad2.errors import ConfigError
from usad2.probe.cache import entry_name
from usad2.studies import chord_cv

CLASSES = ["major", "minor", "sus2", "diminished"]


def _fake(root, informative, data="data"):
    """Data dirs with utt2chord_quality and a feature-cache entry whose layer 1 carries the label."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 80), ("dev", 20), ("test", 24)):
        utts = [f"{split}{i:03d}" for i in range(n)]
        labels = {u: CLASSES[i % 4] for i, u in enumerate(utts)}
        wav = {u: str(root / "x.wav") for u in utts}
        DataDir(wav, utt2chord_quality=labels).write(root / data / split)
        noise = rng.standard_normal((n, 6)).astype(np.float32)
        signal = np.eye(4, dtype=np.float32)[[i % 4 for i in range(n)]] * (3.0 if informative else 0.0)
        entry = root / "cache" / "model-abc123" / entry_name(root / data / split)
        entry.mkdir(parents=True)
        np.savez(entry / "pooled.npz", utt_ids=np.array(utts), layer0=noise,
                 layer1=signal + rng.standard_normal((n, 4)).astype(np.float32))


@pytest.mark.parametrize("informative", [True, False])
def test_cv_reads_out_what_the_features_hold(tmp_path, informative):
    _fake(tmp_path, informative)
    cv, se, n, held, nt = chord_cv.evaluate(str(tmp_path / "cache"), str(tmp_path / "data"), "model")
    assert (n, nt) == (100, 24) and se == pytest.approx(np.sqrt(cv * (1 - cv) / 100))
    if informative:
        assert cv > 0.85 and held > 0.85
    else:
        assert cv < 0.45  # chance 0.25 with 100 clips


def test_each_corpus_is_read_from_its_own_entries(tmp_path):
    """One cache holding the same model on two corpora with the same split names."""
    _fake(tmp_path, True, "data")
    _fake(tmp_path, False, "data_other")
    assert chord_cv.evaluate(str(tmp_path / "cache"), str(tmp_path / "data"), "model")[0] > 0.85
    assert chord_cv.evaluate(str(tmp_path / "cache"), str(tmp_path / "data_other"), "model")[0] < 0.45


def test_missing_model_is_named(tmp_path, capsys):
    _fake(tmp_path, True)
    with pytest.raises(ConfigError, match="0 feature-cache entries of 'other' on .*train"):
        chord_cv.evaluate(str(tmp_path / "cache"), str(tmp_path / "data"), "other")
    assert chord_cv.main(["--feature_cache", str(tmp_path / "cache"), "--data_root", str(tmp_path / "data"),
                          "model"]) == 0
    assert capsys.readouterr().out.startswith("model ")
