"""Hugging Face model directories of a usad2 student (docs/formats.md#51-hugging-face-model-directory).

    python -m usad2.bin.export --checkpoint exp/tag/export/model.pt --format hf --out exp/tag/export/hf

writes DIR/config.json (`model_type: usad2`, `auto_map` to the modeling code), DIR/model.safetensors
(the export's state dict, "encoder.*" keys), the modeling code (`configuration_usad2.py`,
`modeling_usad2.py`, `usad2_encoder.py` = a copy of `usad2/models/encoder.py`) and a model card
(DIR/README.md). `transformers.AutoModel.from_pretrained(DIR, trust_remote_code=True)` then loads
it with nothing of usad2 installed, and every usad2 reader (`usad2.load`, `-u usad2 -k DIR`, the
probe's `--model NAME=DIR`, `usad2.hear`, `usad2.xares`) accepts DIR wherever a `.pt` export goes,
through `usad2.models.checkpoint.read_model_file`. Reading needs safetensors, not transformers.
"""
import json
import os
import shutil

from usad2.errors import CheckpointError

MODEL_TYPE = "usad2"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
# modeling files copied into every directory: name in the directory -> source inside usad2
CODE_FILES = {
    "configuration_usad2.py": ("hf", "configuration_usad2.py"),
    "modeling_usad2.py": ("hf", "modeling_usad2.py"),
    "usad2_encoder.py": ("models", "encoder.py"),
}
AUTO_MAP = {"AutoConfig": "configuration_usad2.Usad2Config", "AutoModel": "modeling_usad2.Usad2Model"}


def is_hf_dir(path):
    """True when `path` is a directory holding a usad2 Hugging Face config.json."""
    path = os.fspath(path)
    config = os.path.join(path, CONFIG_FILE)
    if not (os.path.isdir(path) and os.path.isfile(config)):
        return False
    try:
        with open(config, encoding="utf-8") as f:
            return json.load(f).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False


def _code_source(name):
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sub, file = CODE_FILES[name]
    return os.path.join(package_dir, sub, file)


def hf_config(model, extra=None):
    """The config.json dict of a Usad2Model."""
    from usad2.version import __version__

    try:
        import transformers
        tf_version = transformers.__version__
    except ImportError:  # writing needs no transformers; the field is informative only
        tf_version = None
    config = {
        "model_type": MODEL_TYPE,
        "architectures": ["Usad2Model"],
        "auto_map": dict(AUTO_MAP),
        "encoder_config": model.config.to_dict(),
        "fbank_config": model.fbank_config.to_dict(),
        "hidden_size": model.config.d_model,
        "num_hidden_layers": model.config.num_layers,
        "num_attention_heads": model.config.num_heads,
        "torch_dtype": "float32",
        "usad2_version": __version__,
        "usad2_extra": dict(extra or {}),
    }
    if tf_version:
        config["transformers_version"] = tf_version
    return config


def save_hf_dir(model, out, extra=None, probe_results=None, probe_name="student"):
    """Write `model` (a Usad2Model) as a Hugging Face model directory at `out`, atomically.

    `extra`: the export's provenance (see `usad2.models.export.checkpoint_provenance`), kept in
    config.json as `usad2_extra` and shown in the model card; `probe_results`: a probe
    results.json dict (or path) whose entry `probe_name` goes into the card.
    """
    import torch
    from safetensors.torch import save_file

    from usad2.utils.atomic import atomic_dir

    if isinstance(probe_results, (str, os.PathLike)):
        with open(probe_results, encoding="utf-8") as f:
            probe_results = json.load(f)
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    config = hf_config(model, extra)
    with atomic_dir(out) as tmp:
        save_file(state, os.path.join(tmp, WEIGHTS_FILE), metadata={"format": "pt"})
        with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        for name in CODE_FILES:
            shutil.copyfile(_code_source(name), os.path.join(tmp, name))
        with open(os.path.join(tmp, CARD_FILE), "w", encoding="utf-8") as f:
            f.write(model_card(model, extra, probe_results, probe_name))
    return out


def read_hf_dir(path, map_location="cpu"):
    """The usad2 export dict held by a Hugging Face model directory (see usad2.models.checkpoint)."""
    from usad2.models.checkpoint import FORMAT, FORMAT_VERSION

    path = os.fspath(path)
    config_path, weights_path = os.path.join(path, CONFIG_FILE), os.path.join(path, WEIGHTS_FILE)
    if not os.path.isfile(config_path):
        raise CheckpointError(f"{path}: a directory without {CONFIG_FILE}: not a Hugging Face model directory")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config_path}: not readable JSON ({e})") from None
    if not isinstance(config, dict) or config.get("model_type") != MODEL_TYPE:
        found = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{config_path}: model_type {found!r}, not a usad2 model directory "
                              f"(expected {MODEL_TYPE!r})")
    for key in ("encoder_config", "fbank_config"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"{config_path}: lacks the usad2 key {key!r}")
    if not os.path.isfile(weights_path):
        raise CheckpointError(f"{path}: no {WEIGHTS_FILE}")
    try:
        from safetensors.torch import load_file

        state = load_file(weights_path, device=str(map_location))
    except Exception as e:  # truncated or foreign file
        raise CheckpointError(f"{weights_path}: cannot be read as safetensors ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": config["encoder_config"],
        "fbank_config": config["fbank_config"],
        "state_dict": state,
        "usad2_version": config.get("usad2_version"),
        "extra": dict(config.get("usad2_extra") or {}),
    }


def _preset_name(config):
    from usad2.models.presets import PRESETS

    for name, preset in PRESETS.items():
        if preset.to_dict() == config.to_dict():
            return name
    return None


def _fmt(value):
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def model_card(model, extra=None, probe_results=None, probe_name="student"):
    """README.md text for the directory, from what the export knows (nothing is invented)."""
    from usad2.models.presets import count_parameters
    from usad2.version import __version__

    extra = dict(extra or {})
    cfg = model.config
    preset = _preset_name(cfg) or extra.get("preset") or "custom"
    params = count_parameters(cfg)
    lines = [
        "---",
        "library_name: transformers",
        "tags: [audio, speech, music, feature-extraction, usad2]",
        "---",
        "",
        f"# usad2 student encoder ({preset})",
        "",
        "A universal audio encoder distilled from several frozen teachers with usad2 (USAD 2.0);",
        "16 kHz waveform in, every layer's hidden states out.",
        "",
        "| | |",
        "|---|---|",
        f"| preset | {preset} |",
        f"| parameters | {params:,} |",
        f"| layers x width | {cfg.num_layers} x {cfg.d_model} ({cfg.num_heads} heads) |",
        f"| frame rate | {model.frame_rate:g} Hz ({model.downsample_rate} samples per frame) |",
        f"| input | {model.fbank_config.sample_rate} Hz mono, {model.fbank_config.num_mel_bins}-bin log-mel fbank |",
    ]
    training = extra.get("training") or {}
    if training.get("step") is not None:
        lines.append(f"| training steps | {training['step']} |")
    if training.get("audio_hours") is not None:
        lines.append(f"| training audio | {training['audio_hours']:.2f} hours seen |")
    if training.get("init"):
        lines.append(f"| initialised from | `{training['init']}` |")
    lines.append(f"| usad2 version | {extra.get('usad2_version', __version__)} |")
    teachers = training.get("teachers") or []
    if teachers:
        lines += ["", "## Teachers", "",
                  "Layers distilled in the last training stage, as (student layer, teacher layer) pairs.", "",
                  "| teacher | domain | frame rate (Hz) | layers |", "|---|---|---|---|"]
        for t in teachers:
            pairs = ", ".join(f"({s}, {tl})" for s, tl in t.get("pairs", []))
            lines.append(f"| {t.get('name')} | {t.get('domain', '')} | {t.get('frame_rate', '')} | {pairs} |")
    if extra.get("layer_map"):
        lines += ["", f"Layers upscaled from a shallower model: layer map {extra['layer_map']}."]
    if extra.get("interpolated_with"):
        lines += ["", f"Weights interpolated: {1 - extra['interpolation_weight']:g} x the trained model + "
                      f"{extra['interpolation_weight']:g} x `{extra['interpolated_with']}`."]
    scores = (probe_results or {}).get(probe_name) if isinstance(probe_results, dict) else None
    if isinstance(scores, dict) and scores:
        lines += ["", "## Probe results", "",
                  f"usad2's linear probe suite (`python -m usad2.bin.probe`), entry `{probe_name}`.", "",
                  "| task | score |", "|---|---|"]
        for task in sorted(k for k in scores if not k.startswith("_")):
            lines.append(f"| {task} | {_fmt(scores[task])} |")
        for domain, value in sorted((scores.get("_domain_mean") or {}).items()):
            lines.append(f"| mean ({domain}) | {_fmt(value)} |")
        if "_mean" in scores:
            lines.append(f"| **mean** | **{_fmt(scores['_mean'])}** |")
    lines += [
        "", "## Use", "",
        "```python",
        "import torch",
        "from transformers import AutoModel",
        "",
        'model = AutoModel.from_pretrained("path/to/this/dir", trust_remote_code=True).eval()',
        "wavs = torch.randn(2, 16000) * 0.1                  # (batch, samples), 16 kHz",
        "mask = torch.ones(2, 16000, dtype=torch.long)       # 1 = real sample, 0 = padding",
        "with torch.no_grad():",
        "    out = model(wavs, attention_mask=mask, output_hidden_states=True)",
        "out.hidden_states   # front end + every layer, each (batch, frames, width)",
        "out.attention_mask  # (batch, frames), 1 = valid frame",
        "```",
        "",
        "With usad2 installed the directory also works as `usad2.load(dir)`, an s3prl upstream",
        "(`-u usad2 -k dir`), `usad2.hear` and `usad2.xares`. Call `.eval()`: the encoder has dropout.",
        "",
    ]
    return "\n".join(lines)
