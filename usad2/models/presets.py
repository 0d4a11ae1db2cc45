"""Named encoder sizes (docs/method.md#1-student-encoder): `get_preset(name) -> EncoderConfig`.

The sizes and their parameter counts against the paper's are tabulated in docs/method.md §1
(`python -m usad2.bin.model_info --preset NAME` counts them, on the meta device). 25 Hz presets
use time_stride 4 and freq_stride 4 (the extra x2 stride of docs/method.md#5-scaling in both axes
of the second conv). Every preset has a `_f1` variant with freq_stride 1.

`mini` is the demo recipe's student: tiny's depth at three times its width, with half the conv
channels. Why: the 64-wide tiny student has too little room to keep the input's pitch while
fitting three teachers, and halving the conv channels pays for the width (the 64-channel second
conv at 50 Hz is most of tiny's FLOPs). The measurements are in egs/multidomain/RESULTS.md
section 4. `mini6` is mini with six layers instead of four and the demo recipe's student since
2026-12-06: at the recipe's 2400 steps it fits the teachers better on three seeds of three and
probes 1.5 points higher (speech 3.3), for 1.15x mini's step time (RESULTS.md sections 2.7-2.8).
"""
import dataclasses

import torch

from usad2.errors import ConfigError
from usad2.models.encoder import EncoderConfig, StudentEncoder

PRESETS = {
    # tiny: trains on a laptop CPU in minutes; 4 layers so K=4 sparse distillation maps 1:1
    "tiny": EncoderConfig(d_model=64, num_layers=4, num_heads=4),
    # mini: the CPU demo recipe's student until 2026-12-06 (see above)
    "mini": EncoderConfig(d_model=192, num_layers=4, num_heads=4, conv_channels=32),
    # mini6: mini two layers deeper, the CPU demo recipe's student (see above)
    "mini6": EncoderConfig(d_model=192, num_layers=6, num_heads=4, conv_channels=32),
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
