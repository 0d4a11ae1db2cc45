"""Weight interpolation of two trained models of one architecture (docs/method.md#41-weight-interpolation).

The stage-2 student is a continuation of the stage-1 student, so the two lie in one basin and
every model on the line between them is a working encoder ("WiSE-FT": a fine-tuned model averaged
with its start keeps more of what the start knew). The recipe exports the stage-2 model moved a
fraction of the way back to its stage-1 model; weight 0 is the stage-2 model as trained.
"""
import torch

from usad2.errors import ConfigError


def interpolate_models(model, other, weight, where="model", other_where="other"):
    """`model` with every parameter and buffer replaced by (1 - weight) * model + weight * other.

    In place; returns `model`. Integer buffers (counters) are kept from `model`. A ConfigError
    names both inputs when the weight is outside [0, 1] or the two are not the same architecture.
    """
    weight = float(weight)
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"interpolation weight must lie in [0, 1] (0: {where} as it is), got {weight}")
    check_same_architecture(model, other, where, other_where)
    theirs = other.state_dict()
    mixed = {key: _mix(value, theirs[key], weight) for key, value in model.state_dict().items()}
    model.load_state_dict(mixed, strict=True)
    return model


def check_same_architecture(model, other, where, other_where):
    """ConfigError unless the two models have one encoder config and one front end (hence one state layout)."""
    mine, theirs = model.config.to_dict(), other.config.to_dict()
    if mine != theirs:
        differ = [f"{k} {mine.get(k)!r} vs {theirs.get(k)!r}" for k in sorted(set(mine) | set(theirs))
                  if mine.get(k) != theirs.get(k)]
        raise ConfigError(f"cannot interpolate {where} with {other_where}: other architectures ({'; '.join(differ)})")
    if model.fbank_config.to_dict() != other.fbank_config.to_dict():
        raise ConfigError(f"cannot interpolate {where} with {other_where}: other front ends "
                          f"({model.fbank_config} vs {other.fbank_config})")


def _mix(mine, theirs, weight):
    if not torch.is_floating_point(mine):
        return mine
    return ((1.0 - weight) * mine.double() + weight * theirs.double()).to(mine.dtype)

