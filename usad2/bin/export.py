"""Write a usad2 export (one self-contained file, heads dropped) from a checkpoint.

    python -m usad2.bin.export --checkpoint exp/tag/checkpoints/last.pt --out exp/tag/export/model.pt

Accepted inputs: an existing export (re-validated and rewritten), a training checkpoint dict
with "model_config" and "model" (state dict; heads and other modules are dropped), or a bare
encoder state dict together with --preset. The output is written atomically; a `.done` stamp
beside it (fingerprint of the arguments and the input file) makes reruns skip; --force redoes it.
"""
import os

from usad2.errors import CheckpointError
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.stamp import clear, fingerprint, is_done, mark_done


def _is_state_dict(obj):
    import torch

    return isinstance(obj, dict) and bool(obj) and all(torch.is_tensor(v) for v in obj.values())


def export_model(checkpoint, out, preset=None, force=False, logger=None):
    """Export `checkpoint` to `out`; returns True when work was done, False when the stamp matched."""
    from usad2.models.export import (FORMAT, check_export_dict, export_from_checkpoint, read_torch_file,
                                     save_export, build_model)
    from usad2.models.presets import get_preset

    out_dir = os.path.dirname(os.path.abspath(out))
    fp = fingerprint({"stage": "export", "out": os.path.basename(out), "preset": preset}, [checkpoint])
    if force:
        clear(out_dir)
    elif is_done(out_dir, fp) and os.path.exists(out):
        if logger:
            logger.info("%s is up to date (stamp matches); --force true redoes it", out)
        return False
    obj = read_torch_file(checkpoint)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        check_export_dict(obj, checkpoint)
        model = build_model(obj["model_config"], obj["fbank_config"], obj["state_dict"], checkpoint)
        save_export(model, out, obj.get("extra"))
    elif isinstance(obj, dict) and "model_config" in obj and "model" in obj:
        export_from_checkpoint(checkpoint, out)
    elif _is_state_dict(obj):
        if preset is None:
            raise CheckpointError(f"{checkpoint}: a bare state dict; give --preset to say which model it is")
        export_from_checkpoint({"model_config": get_preset(preset).to_dict(), "model": obj}, out)
    else:
        raise CheckpointError(f"{checkpoint}: neither a usad2 export, a checkpoint with 'model_config' "
                              f"and 'model', nor a state dict")
    mark_done(out_dir, fp, {"checkpoint": os.fspath(checkpoint), "out": os.fspath(out)})
    if logger:
        logger.info("wrote %s", out)
    return True


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="export, training checkpoint or state dict")
    parser.add_argument("--out", required=True, help="export file to write")
    parser.add_argument("--preset", default=None, help="model preset, needed only for a bare state dict")
    parser.add_argument("--force", type=str2bool, default=False, help="redo even if the stamp matches")
    args = parser.parse_args(argv)
    logger = setup_logging()
    log_invocation(logger)
    export_model(args.checkpoint, args.out, args.preset, args.force, logger)
    return 0


if __name__ == "__main__":
    run_main(main)
