"""Depth up-scaling (docs/method.md#5-scaling): an N-layer student from a trained M-layer one by stacking
ranges of its transformer blocks; the default for 32 layers is 1-24 + 9-32 -> 48 layers.

Works on the config + state-dict level, so the same code serves exports and training
checkpoints (whose model state may wrap the encoder as "module.encoder." and hold heads,
which pass through untouched). Ranges are 1-based and inclusive, written "1-24,9-32".
Every other weight (subsampler, positional conv, final LayerNorm) is copied unchanged.
"""
import re

from usad2.errors import ConfigError

_LAYER_KEY = re.compile(r"^((?:module\.|_orig_mod\.)*(?:encoder\.)?)layers\.(\d+)\.(.+)$")


def parse_ranges(text):
    """"1-24,9-32" -> [(1, 24), (9, 32)]; a single "7" means (7, 7)."""
    ranges = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ConfigError(f"bad layer range {part!r} in {text!r}: expected A-B (1-based, inclusive)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo < 1 or hi < lo:
            raise ConfigError(f"bad layer range {part!r} in {text!r}: need 1 <= A <= B")
        ranges.append((lo, hi))
    return ranges


def default_ranges(num_layers):
    """First and last three quarters of the layers: 32 -> [(1, 24), (9, 32)] (48 layers)."""
    keep = max(1, round(0.75 * num_layers))
    return [(1, keep), (num_layers - keep + 1, num_layers)]


def layer_map(ranges, num_layers):
    """1-based source layer of each new layer, checking the ranges against `num_layers`."""
    sources = []
    for lo, hi in ranges:
        if hi > num_layers:
            raise ConfigError(f"layer range {lo}-{hi} exceeds the source model's {num_layers} layers")
        sources.extend(range(lo, hi + 1))
    return sources


def upscale_state_dict(state_dict, sources):
    """New state dict whose block i (0-based) is a copy of source block sources[i] - 1."""
    by_layer, new = {}, {}
    for key, value in state_dict.items():
        m = _LAYER_KEY.match(key)
        if m:
            by_layer.setdefault(int(m.group(2)), []).append((m.group(1), m.group(3), value))
        else:
            new[key] = value
    for i, src in enumerate(sources):
        if src - 1 not in by_layer:
            raise ConfigError(f"source state dict has no layer {src} (has {len(by_layer)} layers)")
        for prefix, rest, value in by_layer[src - 1]:
            new[f"{prefix}layers.{i}.{rest}"] = value.clone()
    return new


def upscale(model_config, state_dict, ranges=None):
    """(config dict, state dict, ranges or None) -> (new config dict, new state dict, layer map)."""
    num_layers = int(model_config["num_layers"])
    if ranges is None:
        ranges = default_ranges(num_layers)
    elif isinstance(ranges, str):
        ranges = parse_ranges(ranges)
    sources = layer_map(ranges, num_layers)
    config = dict(model_config, num_layers=len(sources))
    return config, upscale_state_dict(state_dict, sources), sources
