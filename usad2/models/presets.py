"""Named encoder sizes (docs/method.md#1-student-encoder): `get_preset(name) -> EncoderConfig`.

Parameter counts with this architecture (counted on the meta device, see `count_parameters`):
tiny 0.55 M, small 25.57 M, base 98.85 M, large 338.0 M, xlarge 694.6 M, xxlarge 1035.7 M,
matching the paper's 25.6 / 98.9 / 338 / 695 / 1036 M. 25 Hz presets use time_stride 4 and
freq_stride 4 (the extra x2 stride of docs/method.md#5-scaling in both axes of the second conv).
Every preset has a `_f1` variant with freq_stride 1 (tiny_f1: 0.82 M parameters against 0.55 M).

`mini` (2.56 M) is the demo recipe's student: tiny's depth at three times its width, with half
the conv channels. Measured on the default demo corpus (500 stage-1 steps, seed 0, linear probe
overall mean; egs/multidomain/RESULTS.md): tiny 0.327, d_model 128 0.428, mini 0.466, against
fbank 0.376 and a random mini 0.389; the 64-wide tiny student has too little room to keep the
input's pitch while fitting three teachers, mini keeps it (pitch_class 0.26 -> 0.71). Halving
the conv channels pays for the width: the 64-channel second conv at 50 Hz is most of tiny's
FLOPs, so a mini training step costs about 1.1x tiny's on one CPU thread.
"""
import dataclasses

import torch

from usad2.errors import ConfigError
from usad2.models.encoder import EncoderConfig, StudentEncoder

PRESETS = {
    # tiny: trains on a laptop CPU in minutes; 4 layers so K=4 sparse distillation maps 1:1
    "tiny": EncoderConfig(d_model=64, num_layers=4, num_heads=4),
    # mini: the CPU demo recipe's student (see above)
    "mini": EncoderConfig(d_model=192, num_layers=4, num_heads=4, conv_channels=32),
    "small": EncoderConfig(d_model=384, num_layers=12, num_heads=6),
    "base": EncoderConfig(d_model=768, num_layers=12, num_heads=12),
    "large": EncoderConfig(d_model=1024, num_layers=24, num_heads=16),
    "xlarge": EncoderConfig(d_model=1280, num_layers=32, num_heads=20, time_stride=4, freq_stride=4),
    "xxlarge": EncoderConfig(d_model=1280, num_layers=48, num_heads=20, time_stride=4, freq_stride=4),
}
# `<name>_f1`: the same model without frequency stride in the conv subsampler (all 128 mel rows
# reach the projection, twice the frequency resolution of freq_stride 2; a larger first Linear).
# The remedy that the frequency-resolution study favours (egs/multidomain/RESULTS.md).
PRESETS.update({f"{name}_f1": dataclasses.replace(cfg, freq_stride=1) for name, cfg in list(PRESETS.items())})


def get_preset(name, **overrides):
    """A fresh EncoderConfig for preset `name`, with optional field overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    try:
        return dataclasses.replace(PRESETS[name], **overrides)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad override for preset {name!r}: {e}") from None


def count_parameters(config):
    """Number of parameters of StudentEncoder(config), built on the meta device (no memory)."""
    with torch.device("meta"):
        model = StudentEncoder(config)
    return sum(p.numel() for p in model.parameters())
