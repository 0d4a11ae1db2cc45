"""The s3prl UpstreamExpert for a usad2 student export (`-u usad2 -k <export>`).

Contract (s3prl's `upstream/example/expert.py` and `Featurizer`): `forward` takes a list of 1-D
16 kHz float waves of any lengths and returns a dict whose `hidden_states` is a list of
(B, T, D) tensors of equal shape: the frontend output followed by transformer layers 1..L (or
the subset chosen by `model_config`), plus `last_hidden_state`. `get_downsample_rates` is
computed from the export's configuration, not measured: fbank hop (160 samples) times the
encoder's time stride, i.e. 320 at 50 Hz and 640 at 25 Hz. The model is put in eval mode, so
the output is deterministic; s3prl's runner calls `.train()` only with `-f` (fine-tuning).

Eval mode: `s3prl.nn.S3PRLUpstream` (what ESPnet uses) calls `.train()` on the upstream at the
end of its constructor, and the student keeps its dropout, so two identical calls then give
different features. Call `.eval()` on the S3PRLUpstream (or on the expert) before extracting
frozen features: `S3PRLUpstream("usad2", path_or_url=export).eval()`.

`ckpt` is a usad2 export file, a directory holding exactly one `*.pt` export, or a Hugging Face
model directory written by `python -m usad2.bin.export --format hf`.

Optional `model_config` YAML (`-g`):

    layers: [0, 4, 8, 12]   # indices into [frontend, layer 1, ..., layer L]; negatives count
                            # from the end; default: all L + 1
    precision: fp32         # fp32 (default), bf16 (autocast of the encoder; features returned
                            # as float32) or auto (bf16 where the hardware has bf16 matrix units)
"""
import os

import torch
import yaml
from torch.nn.utils.rnn import pad_sequence

from usad2.errors import CheckpointError, ConfigError
from usad2.utils.precision import autocast, resolve_precision

OPTION_KEYS = {"layers", "precision"}


def load_options(model_config):
    """Read the optional YAML of `-g`; returns a dict with every key of OPTION_KEYS."""
    options = {"layers": None, "precision": "fp32"}
    if model_config is None:
        return options
    if not os.path.isfile(model_config):
        raise ConfigError(f"{model_config}: usad2 upstream model_config (-g) does not exist")
    with open(model_config, encoding="utf-8") as f:
        try:
            loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{model_config}: not valid YAML: {e}") from e
    if not isinstance(loaded, dict):
        raise ConfigError(f"{model_config}: expected a mapping, got {type(loaded).__name__}")
    unknown = set(loaded) - OPTION_KEYS
    if unknown:
        raise ConfigError(f"{model_config}: unknown keys {sorted(unknown)}; "
                          f"known: {sorted(OPTION_KEYS)}")
    options.update(loaded)
    return options


def resolve_layers(layers, num_states, source="model_config"):
    """Turn the `layers` option into sorted-as-given non-negative indices < num_states."""
    if layers is None:
        return list(range(num_states))
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ConfigError(f"{source}: 'layers' must be a non-empty list of integers, got {layers!r}")
    out = []
    for layer in layers:
        if not isinstance(layer, int) or isinstance(layer, bool) or not -num_states <= layer < num_states:
            raise ConfigError(f"{source}: layer {layer!r} is not in [-{num_states}, {num_states}) "
                              f"(frontend 0 + {num_states - 1} layers)")
        out.append(layer % num_states)
    return out


def find_export(ckpt):
    """`ckpt` may be the export file, a Hugging Face model directory, or a directory holding exactly one `*.pt` export."""
    if ckpt is None:
        raise CheckpointError("the usad2 upstream needs a local export: pass -k <export.pt> "
                              "(s3prl) or path_or_url=<export.pt> (S3PRLUpstream)")
    ckpt = os.fspath(ckpt)
    from usad2.hf import is_hf_dir

    if is_hf_dir(ckpt):
        return ckpt
    if os.path.isdir(ckpt):
        found = sorted(n for n in os.listdir(ckpt) if n.endswith(".pt"))
        if len(found) != 1:
            raise CheckpointError(f"{ckpt}: expected exactly one *.pt export in the directory, "
                                  f"found {found or 'none'}")
        ckpt = os.path.join(ckpt, found[0])
    if not os.path.isfile(ckpt):
        raise CheckpointError(f"{ckpt}: usad2 export not found")
    return ckpt


class UpstreamExpert(torch.nn.Module):
    """s3prl upstream around `usad2.load(ckpt)`; see the module docstring for the contract."""

    def __init__(self, ckpt=None, model_config=None, **kwargs):
        super().__init__()
        import usad2

        self.name = "[usad2 UpstreamExpert]"
        options = load_options(model_config)
        self.model = usad2.load(find_export(ckpt))
        self.num_states = self.model.config.num_layers + 1
        self.layers = resolve_layers(options["layers"], self.num_states,
                                     source=model_config or "model_config")
        self._downsample_rate = self.model.downsample_rate  # fbank hop x time stride (Usad2Model.timing)
        try:
            self.precision = resolve_precision(options["precision"], next(self.model.parameters()).device)
        except ConfigError as e:
            raise ConfigError(f"{model_config}: {e}") from None
        # one fbank window gives one output frame; shorter waves are zero-padded to it
        self.min_samples = self.model.fbank_config.window_samples
        self.eval()  # deterministic features; s3prl's runner calls .train() only with -f

    def get_downsample_rates(self, key: str) -> int:
        """Every returned feature has the same rate: hop x time stride (320 or 640)."""
        return self._downsample_rate

    def forward(self, wavs):
        """wavs: list of 1-D 16 kHz float tensors -> dict with hidden_states (list of (B, T, D))."""
        lengths = torch.tensor([max(len(w), self.min_samples) for w in wavs], device=wavs[0].device)
        padded = pad_sequence([w.float() for w in wavs], batch_first=True)
        if padded.shape[1] < self.min_samples:
            padded = torch.nn.functional.pad(padded, (0, self.min_samples - padded.shape[1]))
        with autocast(self.precision, padded.device):
            out = self.model(padded, lengths)
        states = [out.hidden_states[i].float() for i in self.layers]
        return {"hidden_states": states, "last_hidden_state": states[-1]}
