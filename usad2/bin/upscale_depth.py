"""Build a deeper student by stacking layer ranges of a trained one (depth up-scaling, docs/method.md §5).

    python -m usad2.bin.upscale_depth --src exp/xl/export/model.pt --out exp/xxl_init.pt --ranges 1-24,9-32

--src may be a usad2 export (the output is an export) or a training checkpoint dict with
"model_config" and "model" (the output is a checkpoint dict holding model_config, model and the
provenance only: optimizer and scheduler state no longer match the new shapes; heads stored inside
"model" are kept, a trainer checkpoint's separate "heads" are not: they were fitted to the old depth).
Without --ranges, a model of M layers keeps its first and last 3/4 (32 -> 1-24,9-32 = 48).
The output records {"upscaled_from", "layer_map"}; a `.done` stamp makes reruns skip.
"""
import os

from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.stamp import clear, fingerprint, is_done, mark_done


def upscale_depth(src, out, ranges=None, force=False, logger=None):
    """Up-scale `src` into `out`; returns the 1-based source layer of each new layer (None if skipped)."""
    from usad2.models.checkpoint import build_model, read_model_file
    from usad2.models.export import save_export
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
    found = read_model_file(src).require("export", "checkpoint", why="a bare state dict has no model config")
    provenance = {"upscaled_from": os.fspath(src)}
    if found.kind == "export":
        config, state, sources = upscale(found.model_config, found.state_dict, ranges)
        model = build_model(config, found.fbank_config, state, f"{src} (up-scaled)")
        save_export(model, out, dict(found.provenance, **provenance, layer_map=sources))
    else:  # the stored model state as it is (wrapper prefixes and embedded heads included)
        config, state, sources = upscale(found.model_config, found.raw["model"], ranges)
        new = {"model_config": config, "model": state, **provenance, "layer_map": sources}
        if found.fbank_config is not None:
            new["fbank_config"] = found.fbank_config
        atomic_torch_save(new, out)
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
