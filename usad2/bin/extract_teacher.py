"""Stage 4: extract a teacher's layers over a data dir into offline targets (kaldiio ark/scp).

    python -m usad2.bin.extract_teacher --data dump/raw/train_mix --teacher yamnet \
        --out dump/targets/yamnet/train_mix --nj 4 [--job J]

With `--job J` only shard J of `--nj` is extracted (what a job launcher runs as
`JOB=1:N ... --job JOB`); without it every unfinished shard runs here. Whenever all shards are
complete the shards are merged into `<out>/L<k>.scp`, `utt2num_frames` and `meta.json`. Done
shards are skipped by fingerprint, so a rerun after a crash redoes only what was unfinished.
The fingerprint covers the data dir's index files, not the audio files' content.
"""
from usad2.data.datadir import load_data_dir
from usad2.errors import ConfigError
from usad2.targets.extract import default_layers, run_extraction
from usad2.teachers.registry import add_teacher_cards_option, build_teacher, family_class, load_card, with_overrides
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.precision import PRECISIONS, resolve_precision


def parse_layers(text):
    return [int(x) for x in text.split(",") if x.strip()] if text else None


def build_parser():
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="Kaldi data dir (wav.scp [+ segments])")
    p.add_argument("--teacher", required=True, help="teacher card name (python -m usad2.bin.teachers list)")
    p.add_argument("--out", required=True, help="output targets dir")
    p.add_argument("--checkpoint", default=None, help="local checkpoint path overriding the card's source")
    p.add_argument("--layers", default=None,
                   help="comma-separated 1-based teacher layers (default: the card's distill_layers, "
                        "else the K-sparse teacher layers floor(k*L/K))")
    p.add_argument("--k", type=int, default=4, help="layer pairs per teacher (docs/method.md §3.1)")
    p.add_argument("--nj", type=int, default=1, help="number of shards")
    p.add_argument("--job", type=int, default=None, help="extract only this shard (1-based)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="torch teachers: bf16 autocast (targets are stored as --dtype anyway), fp32, or auto "
                   "(bf16 where the CPU/GPU has bf16 matrix units); onnx/numpy teachers always run as they are")
    p.add_argument("--allow_pipes", type=str2bool, default=False, help="allow Kaldi `cmd |` entries in wav.scp")
    add_teacher_cards_option(p)
    p.add_argument("--force", type=str2bool, default=False,
                   help="redo the shards this call runs (only --job's shard when given)")
    p.add_argument("--progress", type=str2bool, default=True)
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads of this process (onnx teachers use one anyway); keep "
                        "nj x threads <= cores: the recipe runs its nj jobs side by side, and oversubscribed "
                        "OpenMP threads spin-wait (2.7x slower measured for resemblyzer)")
    return p


def extract_teacher(data, teacher, out, checkpoint=None, layers=None, k=4, nj=1,
                    job=None, dtype="float16", device="cpu", allow_pipes=False, teacher_cards=None,
                    force=False, progress=True, precision="auto"):
    """Plain-function form of the command; returns True when the merged targets are complete."""
    data_dir = load_data_dir(data, allow_pipes=allow_pipes)
    card = with_overrides(load_card(teacher, teacher_cards), checkpoint)
    layers = layers or default_layers(card, k)
    def loader(utt):
        src = data_dir.source(utt)

        def load():
            from usad2.audio.io import load_audio  # imports torch: only when a shard has work

            return load_audio(src.path, name=utt, allow_pipes=allow_pipes, start=src.start or None,
                              end=src.end)
        return load

    items = [(utt, loader(utt)) for utt in data_dir.utt_ids]
    fp_args = {"card": card.to_dict(), "checkpoint": checkpoint, "k": k}
    precision = resolve_precision(precision, device) if family_class(card.family).torch_compute else "fp32"
    if precision != "fp32":  # fp32 targets keep the stamps they had before the option existed
        fp_args["precision"] = precision
    return run_extraction(items, card, lambda: build_teacher(card, device=device), out, layers, nj=nj, jobs=[job] if job else None, dtype=dtype,
                          fingerprint_args=fp_args, inputs=[data], force=force, progress=progress,
                          precision=precision)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    logger = setup_logging()
    log_invocation(logger)
    complete = extract_teacher(args.data, args.teacher, args.out, args.checkpoint, parse_layers(args.layers),
                               args.k, args.nj, args.job, args.dtype, args.device,
                               args.allow_pipes, args.teacher_cards, args.force, args.progress, args.precision)
    logger.info("targets %s: %s", args.out, "complete" if complete else f"shard {args.job} done, others pending")
    return 0


if __name__ == "__main__":
    run_main(main)
