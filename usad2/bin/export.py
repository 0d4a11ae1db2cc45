"""Write a usad2 export (one self-contained file, heads dropped) or a Hugging Face model directory.

    python -m usad2.bin.export --checkpoint exp/tag/checkpoints/last.pt --out exp/tag/export/model.pt
    python -m usad2.bin.export --checkpoint exp/tag/export/model.pt --format hf --out exp/tag/export/hf

Accepted inputs: an existing export or Hugging Face directory (re-validated and rewritten), a
training checkpoint dict with "model_config" and "model" (state dict; heads and other modules are
dropped; its step, audio hours and teachers are kept as provenance), or a bare encoder state dict
together with --preset. `--format pt` writes the export file (docs/formats.md#5-export); `--format
hf` writes a directory that `transformers.AutoModel.from_pretrained(DIR, trust_remote_code=True)`
loads without usad2 (docs/formats.md#51-hugging-face-model-directory), with a model card
(README.md) that shows the probe results of --probe_results (default: the experiment's
probe/results.json when the input lies in <exp>/export/ or <exp>/checkpoints/ and it exists).
`--interpolate_with MODEL --interpolate_weight W` exports (1 - W) * input + W * MODEL instead, two
models of one architecture (the recipe's stage-2 model moved back towards its stage-1 model;
docs/method.md#41-weight-interpolation); the export records both and W.
The output is written atomically; a `.done` stamp beside it (fingerprint of the arguments and the
input) makes reruns skip; --force redoes it.
"""
import os

from usad2.errors import ConfigError
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.stamp import clear, fingerprint, is_done, mark_done

FORMATS = ("pt", "hf")
DEFAULT_INTERPOLATION = 0.5


def read_student(checkpoint, preset=None):
    """(Usad2Model in eval mode, provenance dict) from any accepted input (see the module docstring)."""
    from usad2.models.checkpoint import read_model_file

    found = read_model_file(checkpoint, preset=preset)
    return found.build(), found.provenance


def default_probe_results(checkpoint):
    """<exp>/probe/results.json for an input in <exp>/export/ or <exp>/checkpoints/, when it exists."""
    parent = os.path.dirname(os.path.abspath(os.fspath(checkpoint)))
    if os.path.basename(parent) not in ("export", "checkpoints"):
        return None
    found = os.path.join(os.path.dirname(parent), "probe", "results.json")
    return found if os.path.isfile(found) else None


def export_model(checkpoint, out, preset=None, force=False, logger=None, fmt="pt", probe_results=None,
                 probe_name="student", interpolate_with=None, interpolate_weight=None):
    """Export `checkpoint` (moved `interpolate_weight` of the way to `interpolate_with`, if given) to `out`;
    returns True when work was done, False when the stamp matched."""
    from usad2.models.export import save_export

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if interpolate_weight is not None and not interpolate_with:
        raise ConfigError("--interpolate_weight needs --interpolate_with (the model to interpolate with)")
    if interpolate_with and interpolate_weight is None:
        interpolate_weight = DEFAULT_INTERPOLATION
    if fmt == "hf" and probe_results is None:
        probe_results = default_probe_results(checkpoint)
    out_dir = os.path.dirname(os.path.abspath(out))
    args = {"stage": "export", "out": os.path.basename(out), "preset": preset, "format": fmt,
            "probe_name": probe_name if probe_results else None, "interpolate_weight": interpolate_weight}
    fp = fingerprint(args, [checkpoint] + ([interpolate_with] if interpolate_with else [])
                     + ([probe_results] if probe_results else []))
    if force:
        clear(out_dir)
    elif is_done(out_dir, fp) and os.path.exists(out):
        if logger:
            logger.info("%s is up to date (stamp matches); --force true redoes it", out)
        return False
    model, extra = read_student(checkpoint, preset)
    if interpolate_with:
        model, extra = interpolated(model, extra, checkpoint, interpolate_with, interpolate_weight, logger)
    if fmt == "hf":
        from usad2.hf import save_hf_dir

        save_hf_dir(model, out, extra, probe_results, probe_name)
    else:
        save_export(model, out, extra)
    mark_done(out_dir, fp, {"checkpoint": os.fspath(checkpoint), "out": os.fspath(out), "format": fmt})
    if logger:
        logger.info("wrote %s", out)
    return True


def interpolated(model, extra, checkpoint, other_path, weight, logger=None):
    """(`model` moved `weight` of the way to the model of `other_path`, provenance saying so)."""
    from usad2.models.interpolate import interpolate_models

    other, _ = read_student(other_path)
    interpolate_models(model, other, weight, os.fspath(checkpoint), os.fspath(other_path))
    if logger:
        logger.info("interpolated %s with %s at weight %g", checkpoint, other_path, weight)
    return model, dict(extra, interpolated_with=os.fspath(other_path), interpolation_weight=float(weight))


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="export, Hugging Face directory, training checkpoint or state dict")
    parser.add_argument("--out", required=True, help="export file (--format pt) or directory (--format hf) to write")
    parser.add_argument("--format", default="pt", choices=FORMATS,
                        help="pt: one usad2 export file; hf: a Hugging Face model directory")
    parser.add_argument("--preset", default=None, help="model preset, needed only for a bare state dict")
    parser.add_argument("--probe_results", default=None,
                        help="probe results.json for the hf model card (default: <exp>/probe/results.json if present)")
    parser.add_argument("--probe_name", default="student", help="entry of --probe_results to show")
    parser.add_argument("--interpolate_with", default=None,
                        help="a model of the same architecture (export or checkpoint) to interpolate with")
    parser.add_argument("--interpolate_weight", type=float, default=None,
                        help=f"weight of --interpolate_with in [0, 1] (default {DEFAULT_INTERPOLATION}; 0: the "
                             "--checkpoint model as it is)")
    parser.add_argument("--force", type=str2bool, default=False, help="redo even if the stamp matches")
    args = parser.parse_args(argv)
    logger = setup_logging()
    log_invocation(logger)
    export_model(args.checkpoint, args.out, args.preset, args.force, logger, args.format, args.probe_results,
                 args.probe_name, args.interpolate_with, args.interpolate_weight)
    return 0


if __name__ == "__main__":
    run_main(main)
