"""The student front end (usad2.audio.frontend) against independent implementations and properties.

Independent implementations:
- fairseq2's WaveformToFbankConverter (C++ kaldi-native-fbank). It exposes only num_mel_bins,
  waveform_scale, channel_last and standardize; everything else is kaldi-native-fbank's default:
  Kaldi's "povey" window (Hann ** 0.85) instead of our Hanning, dither 0 (its output is
  deterministic), pre-emphasis 0.97, DC removal, 25/10 ms, 20 Hz..Nyquist, no energy. htk_compat
  only moves the energy coefficient, which is off on both sides. So the comparison runs our full
  code path (mean removal, int16 scaling, Kaldi fbank, normalisation) with window_type="povey",
  undoes our normalisation, and compares with fairseq2 fed our mean-removed waveform.
- A small numpy Kaldi fbank written in this file. It is first checked against fairseq2 with the
  povey window, then used to check the Hanning window the student really uses.
Tolerance reached: max |difference| < 1e-3 in log-mel units (measured ~2e-4; float32 FFTs).
"""
import math

import numpy as np
import pytest
import torch

from usad2.audio.frontend import (FBANK_MEAN, FBANK_STD, SILENCE_FEATURE, Fbank, FbankConfig,
                                  compute_fbank, fbank_one, num_frames)
from usad2.errors import AudioError, ConfigError

SR = 16000
LOG_MEL_ATOL = 1e-3


def _signal(n, seed, tone=None):
    """Noise plus a few tones at speech-like levels (well above the log floor in every bin)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    x = 0.05 * torch.randn(n, generator=g)
    for f in tone or (220.0, 1300.0, 5100.0):
        x += 0.2 * torch.sin(2 * math.pi * f * t)
    return x + 0.01  # a DC offset, removed by the front end


def _unnormalise(feats, config):
    return feats * (2 * config.std) + config.mean


def _fairseq2_fbank(wave):
    from fairseq2.data.audio import WaveformToFbankConverter

    conv = WaveformToFbankConverter(num_mel_bins=128, waveform_scale=32768.0,
                                    channel_last=True, standardize=False)
    return conv({"waveform": wave.unsqueeze(1), "sample_rate": SR})["fbank"]


def _hz_to_mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (np.exp(np.asarray(m, dtype=np.float64) / 1127.0) - 1.0)


def _mel_centres(num_bins=128, low=20.0, high=SR / 2):
    """Centre frequencies (Hz) of Kaldi's triangular mel bins: equally spaced on the HTK mel scale."""
    lo, hi = _hz_to_mel(low), _hz_to_mel(high)
    delta = (hi - lo) / (num_bins + 1)
    return _mel_to_hz(lo + delta * np.arange(1, num_bins + 1))


def _numpy_kaldi_fbank(wave, window, num_bins=128):
    """Reference Kaldi fbank (float64): frames, DC removal, pre-emphasis, window, |FFT|^2, mel, log."""
    x = np.asarray(wave, dtype=np.float64) * 32768.0
    size, shift, nfft = 400, 160, 512
    count = 1 + (len(x) - size) // shift
    frames = np.stack([x[t * shift:t * shift + size] for t in range(count)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = frames - 0.97 * np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / (size - 1))
    frames = frames * (hann if window == "hanning" else hann ** 0.85)
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2
    lo, hi = _hz_to_mel(20.0), _hz_to_mel(SR / 2)
    delta = (hi - lo) / (num_bins + 1)
    mel = _hz_to_mel(np.arange(nfft // 2) * SR / nfft)  # Kaldi leaves out the Nyquist bin
    left = lo + delta * np.arange(num_bins)[:, None]
    weights = np.maximum(0.0, np.minimum((mel - left) / delta, (left + 2 * delta - mel) / delta))
    energies = power[:, : nfft // 2] @ weights.T
    return np.log(np.maximum(energies, np.finfo(np.float32).eps))


@pytest.mark.parametrize("n,seed", [(16000, 0), (7001, 1), (400, 2)])
def test_matches_fairseq2_with_povey_window(n, seed):
    wave = _signal(n, seed)
    config = FbankConfig(window_type="povey")
    ours = _unnormalise(fbank_one(wave, config), config)
    theirs = _fairseq2_fbank(wave - wave.mean())
    assert ours.shape == theirs.shape == (num_frames(n), 128)
    assert (ours - theirs).abs().max().item() < LOG_MEL_ATOL


def test_numpy_reference_matches_fairseq2():
    """The reference below must itself agree with the independent C++ implementation."""
    wave = _signal(8000, 3)
    ref = _numpy_kaldi_fbank((wave - wave.mean()).numpy(), "povey")
    theirs = _fairseq2_fbank(wave - wave.mean()).double().numpy()
    assert np.abs(ref - theirs).max() < LOG_MEL_ATOL


@pytest.mark.parametrize("seed", [4, 5])
def test_hanning_front_end_matches_numpy_reference(seed):
    wave = _signal(12345, seed, tone=(440.0, 3000.0))
    config = FbankConfig()
    assert config.window_type == "hanning"
    ours = _unnormalise(fbank_one(wave, config), config).double().numpy()
    ref = _numpy_kaldi_fbank((wave - wave.mean()).numpy(), "hanning")
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < LOG_MEL_ATOL
    # and the window choice matters: the povey result is clearly different
    povey = _numpy_kaldi_fbank((wave - wave.mean()).numpy(), "povey")
    assert np.abs(ours - povey).max() > 0.1


def test_normalisation_constants():
    wave = _signal(4000, 6)
    raw = _numpy_kaldi_fbank((wave - wave.mean()).numpy(), "hanning")
    ours = fbank_one(wave).double().numpy()
    assert np.allclose(ours, (raw + 4.268) / (2 * 4.569), atol=LOG_MEL_ATOL)
    assert (FBANK_MEAN, FBANK_STD) == (-4.268, 4.569)


def test_pure_tone_lands_in_nearest_mel_bin():
    """A tone at each bin's centre peaks in that bin; random tones peak in the nearest-centre bin.

    Below ~550 Hz the bins are narrower than the 31.25 Hz FFT resolution (512-point FFT), so
    the nearest bin is not resolvable there: the check covers bins centred at >= 600 Hz.
    """
    centres = _mel_centres()
    t = torch.arange(8000) / SR
    checked = 0
    for b, f in enumerate(centres):
        if f < 600:
            continue
        feats = fbank_one(0.5 * torch.sin(2 * math.pi * f * t))
        assert int(feats.mean(0).argmax()) == b, f"tone {f:.1f} Hz"
        checked += 1
    assert checked > 90
    rng = np.random.default_rng(0)
    for f in rng.uniform(600, 7900, 40):
        b = int(np.argmin(np.abs(centres - f)))
        spacing = centres[min(b + 1, 127)] - centres[max(b - 1, 0)]
        if abs(f - centres[b]) > spacing / 8:  # too close to the boundary between two bins
            continue
        feats = fbank_one(0.5 * torch.sin(2 * math.pi * f * t))
        assert int(feats.mean(0).argmax()) == b, f"tone {f:.1f} Hz"


def test_silence_maps_to_documented_constant():
    expected = (math.log(2.0 ** -23) + 4.268) / (2 * 4.569)
    assert SILENCE_FEATURE == pytest.approx(expected, abs=1e-7)
    assert SILENCE_FEATURE == pytest.approx(-1.2775648, abs=1e-6)
    assert FbankConfig().silence_feature == pytest.approx(expected)
    for wave in (torch.zeros(3200), torch.full((3200,), 0.3)):  # a constant is silence once the mean is gone
        feats = fbank_one(wave)
        assert feats.shape == (num_frames(3200), 128)
        assert torch.allclose(feats, torch.full_like(feats, expected), atol=1e-5)


def test_batched_equals_per_utterance_and_padding_is_ignored():
    lengths = [16000, 9000, 401]
    waves = [_signal(n, 10 + i) for i, n in enumerate(lengths)]
    padded = torch.randn(3, 16000)  # garbage in the padding must not matter
    for i, w in enumerate(waves):
        padded[i, : len(w)] = w
    feats, feat_lengths = compute_fbank(padded, torch.tensor(lengths))
    assert feats.shape == (3, num_frames(16000), 128)
    assert feat_lengths.tolist() == [num_frames(n) for n in lengths] == [98, 54, 1]
    for i, w in enumerate(waves):
        single = fbank_one(w)
        assert torch.allclose(feats[i, : feat_lengths[i]], single, atol=1e-5)
        assert torch.all(feats[i, feat_lengths[i]:] == 0)
    list_feats, list_lengths = compute_fbank(waves)
    assert torch.equal(list_lengths, feat_lengths)
    assert torch.allclose(list_feats, feats, atol=1e-5)
    module_feats, _ = Fbank()(padded, torch.tensor(lengths))
    assert torch.allclose(module_feats, feats, atol=1e-5)


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000, 16001, 12345])
def test_frame_count_formula(n):
    expected = 1 + (n - 400) // 160
    assert num_frames(n) == expected
    assert fbank_one(torch.randn(n) * 0.1).shape == (expected, 128)
    assert Fbank().output_lengths(torch.tensor([n])).tolist() == [expected]


def test_num_frames_tensor_and_too_short():
    assert num_frames(torch.tensor([0, 399, 400, 560])).tolist() == [0, 0, 1, 2]
    assert num_frames(399) == 0
    with pytest.raises(AudioError, match="utterance 'u9'.*399 samples is shorter"):
        fbank_one(torch.zeros(399), name="u9")
    with pytest.raises(AudioError, match="utt_b.*shorter than one"):
        compute_fbank([torch.zeros(800), torch.zeros(100)], names=["utt_a", "utt_b"])
    with pytest.raises(AudioError, match="length 900 > its 800 samples"):
        compute_fbank(torch.zeros(1, 800), torch.tensor([900]))


def test_config_round_trip_and_unknown_key():
    config = FbankConfig(window_type="povey")
    assert FbankConfig.from_dict(config.to_dict()) == config
    old = FbankConfig().to_dict()
    del old["window_type"]  # configs saved before window_type existed still load
    assert FbankConfig.from_dict(old) == FbankConfig()
    with pytest.raises(ConfigError, match="unknown keys \\['n_fft'\\]"):
        FbankConfig.from_dict({**FbankConfig().to_dict(), "n_fft": 512})
