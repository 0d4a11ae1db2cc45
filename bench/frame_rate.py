"""25 Hz vs 50 Hz student at equal width and depth, inference on 30 s inputs.

Both are preset `base` (12 x 768, 12 heads); the 25 Hz variant sets time_stride 4 and
freq_stride 4 as the xlarge/xxlarge presets do (docs/method.md#5-scaling). The full waveform model runs
(fbank included) in eval / inference mode. Ratio = 50 Hz time / 25 Hz time.
"""
import torch

from bench.common import Result, interleaved

SR = 16000


def runner(config, wave):
    from usad2.models.wave_encoder import Usad2Model

    torch.manual_seed(0)
    model = Usad2Model(config).eval()

    def run():
        with torch.inference_mode():
            return model(wave, torch.full((wave.shape[0],), wave.shape[1]))
    return run


def run(quick=False):
    from usad2.models.presets import get_preset

    preset, seconds, repeats = ("small", 30.0, 2) if quick else ("base", 30.0, 3)
    torch.manual_seed(0)
    wave = (0.1 * torch.randn(1, int(seconds * SR))).clamp(-1, 1)
    fns = {"50hz": runner(get_preset(preset), wave),
           "25hz": runner(get_preset(preset, time_stride=4, freq_stride=4), wave)}
    times = interleaved(fns, repeats)
    return [Result("frame_rate 25hz/50hz speed-up", times["50hz"] / times["25hz"], 2.5,
                   note=f"{preset}: {times['50hz']:.2f} s vs {times['25hz']:.2f} s for {seconds:g} s input "
                        f"(RTF {times['50hz'] / seconds:.4f} vs {times['25hz'] / seconds:.4f}, 1 thread)")]
