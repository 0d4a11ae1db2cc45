"""Print a student encoder's configuration and parameter count.

    python -m usad2.bin.model_info --preset small
    python -m usad2.bin.model_info --export exp/tag/export/model.pt

One "key: value" line per configuration field, the frame and downsample rates, and as the
LAST line `params: <integer>` (counted on the meta device: no memory is allocated).
"""
import logging

from usad2.errors import ConfigError
from usad2.utils.cli import make_parser, run_main
from usad2.utils.log import log_invocation, setup_logging


def model_info(preset=None, export=None):
    """The lines to print for a preset name or an export path (exactly one of them)."""
    from usad2.audio.frontend import FbankConfig
    from usad2.models.encoder import EncoderConfig
    from usad2.models.checkpoint import read_model_file
    from usad2.models.presets import count_parameters, get_preset
    from usad2.models.wave_encoder import frame_timing

    if (preset is None) == (export is None):
        raise ConfigError("give exactly one of --preset and --export")
    if preset is not None:
        config, fbank, source = get_preset(preset), FbankConfig(), f"preset {preset}"
    else:
        found = read_model_file(export).require("export")
        config = EncoderConfig.from_dict(found.model_config)
        fbank, source = FbankConfig.from_dict(found.fbank_config), f"export {export}"
    lines = [f"source: {source}"]
    lines += [f"{k}: {v}" for k, v in config.to_dict().items()]
    timing = frame_timing(config, fbank)
    lines.append(f"frame_rate: {float(timing.rate)}")
    lines.append(f"downsample_rate: {timing.samples_per_frame}")
    lines.append(f"params: {count_parameters(config)}")
    return lines


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--preset", default=None, help="preset name (tiny, small, base, large, xlarge, xxlarge)")
    parser.add_argument("--export", default=None, help="path of a usad2 export file")
    args = parser.parse_args(argv)
    log_invocation(setup_logging("WARNING"))
    logging.getLogger("usad2").debug("model_info %s", vars(args))
    print("\n".join(model_info(args.preset, args.export)))
    return 0


if __name__ == "__main__":
    run_main(main)
