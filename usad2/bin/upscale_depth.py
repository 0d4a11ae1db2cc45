"""Build a deeper student by stacking layer ranges of a trained one (depth up-scaling, docs/method.md §5).

    python -m usad2.bin.upscale_depth --src exp/xl/export/model.pt --out exp/xxl_init.pt --ranges 1-24,9-32

--src may be a usad2 export (the output is an export) or a training checkpoint dict with
"model_config" and "model" (the output is a checkpoint dict holding model_config, model and the
provenance only: optimizer and scheduler state no longer match the new shapes; heads are kept).
Without --ranges, a model of M layers keeps its first and last 3/4 (32 -> 1-24,9-32 = 48).
The output records {"upscaled_from", "layer_map"}; a `.done` stamp makes reruns skip.
"""
import os

from usad2.errors import CheckpointError
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.stamp import clear, fingerprint, is_done, mark_done


def upscale_depth(src, out, ranges=None, force=False, logger=None):
    """Up-scale `src` into `out`; returns the 1-based source layer of each new layer (None if skipped)."""
    from usad2.models.export import FORMAT, build_model, check_export_dict, read_model_file, save_export
    from usad2.models.upscale import upscale
    from usad2.utils.atomic import atomic_torch_save

    out_dir = os.path.dirname(os.path.abspath(out))
    fp = fingerprint({"stage": "upscale_depth", "out": os.path.basename(out), "ranges": ranges}, [src])
    if force:
        clear(out_dir)
    elif is_done(out_dir, fp) and os.path.exists(out):
        if logger:
            logger.info("%s is up to date (stamp matches); --force true redoes it", out)
        return None
    obj = read_model_file(src)
    provenance = {"upscaled_from": os.fspath(src)}
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        check_export_dict(obj, src)
        config, state, sources = upscale(obj["model_config"], obj["state_dict"], ranges)
        model = build_model(config, obj["fbank_config"], state, f"{src} (up-scaled)")
        save_export(model, out, dict(obj.get("extra") or {}, **provenance, layer_map=sources))
    elif isinstance(obj, dict) and "model_config" in obj and "model" in obj:
        config, state, sources = upscale(obj["model_config"], obj["model"], ranges)
        new = {"model_config": config, "model": state, **provenance, "layer_map": sources}
        if "fbank_config" in obj:
            new["fbank_config"] = obj["fbank_config"]
        atomic_torch_save(new, out)
    else:
        raise CheckpointError(f"{src}: neither a usad2 export nor a checkpoint with 'model_config' and 'model'")
    mark_done(out_dir, fp, {"src": os.fspath(src), "out": os.fspath(out), "layer_map": sources})
    if logger:
        logger.info("wrote %s: %d layers from source layers %s", out, len(sources), sources)
    return sources


def main(argv=None):
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="trained export or training checkpoint")
    parser.add_argument("--out", required=True, help="file to write")
    parser.add_argument("--ranges", default=None,
                        help="1-based inclusive source layer ranges, e.g. 1-24,9-32 (default: first and "
                             "last 3/4 of the layers)")
    parser.add_argument("--force", type=str2bool, default=False, help="redo even if the stamp matches")
    args = parser.parse_args(argv)
    logger = setup_logging()
    log_invocation(logger)
    upscale_depth(args.src, args.out, args.ranges, args.force, logger)
    return 0


if __name__ == "__main__":
    run_main(main)
