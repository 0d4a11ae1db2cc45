"""Stage 8 option: probe an export with s3prl's own runner (`-u usad2`) on one demo label.

    python -m usad2.bin.s3prl_probe --export exp/x/export/model.pt --data_root dump/raw \\
        --label instrument_family --steps 200 --out_dir exp/x/probe/s3prl

Why: the internal probe suite is usad2's own code; this runs the unmodified s3prl
`run_downstream -u usad2 -d emotion` (a mean-pooled linear utterance classifier, the SUPERB
emotion recipe) on the same corpus, so the upstream contract is exercised end to end and its
accuracy can be read next to the internal probes. The data dirs are cut to the utterances that
carry `utt2<label>` (s3prl needs one label per file), turned into the downstream's JSON lists
(`s3prl_runner --make-meta`), trained for `--steps` with one evaluation at the end, and the test
accuracy is computed from s3prl's prediction and truth files. Output: <out_dir>/results.json
`{"task": "s3prl_<label>", "accuracy", "chance", "num_train", "num_test", "steps", "export"}`;
skipped when its .done stamp matches (--force redoes it).
"""
import json
import logging
import os
import subprocess
import sys
from collections import Counter

from usad2.data.datadir import load_data_dir
from usad2.errors import ConfigError, DataDirError, Usad2Error
from usad2.utils.atomic import atomic_write_text
from usad2.utils.cli import make_parser, run_main, str2bool
from usad2.utils.log import log_invocation, setup_logging
from usad2.utils.stamp import clear, fingerprint, is_done, mark_done

logger = logging.getLogger("usad2.bin.s3prl_probe")


def labelled_subset(data_dir, label, out_dir):
    """Write the utterances of `data_dir` having exactly one utt2<label> token to `out_dir`."""
    data = load_data_dir(data_dir)
    table = data.table("utt2" + label)
    if table is None:
        raise DataDirError(f"{data_dir}: no utt2{label} file (the s3prl probe's label)")
    keep = [u for u in data.utt_ids if len(table.get(u) or ()) == 1]
    if not keep:
        raise DataDirError(f"{data_dir}/utt2{label}: no utterance with exactly one label")
    data.subset(keep).write(out_dir)
    return len(keep)


def _read_pairs(path):
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f if line.strip()]


def score_files(expdir, fold="fold1"):
    """Accuracy of s3prl's test_<fold>_predict.txt against test_<fold>_truth.txt."""
    predict = _read_pairs(os.path.join(expdir, f"test_{fold}_predict.txt"))
    truth = _read_pairs(os.path.join(expdir, f"test_{fold}_truth.txt"))
    if not truth or len(predict) != len(truth):
        raise Usad2Error(f"{expdir}: s3prl wrote {len(predict)} predictions for {len(truth)} test files")
    return sum(p[-1] == t[-1] for p, t in zip(predict, truth)) / len(truth)


def run_s3prl(export, meta_dir, expdir, steps, device="cpu", batch_size=8):
    """Train the emotion downstream for `steps` through the usad2 wrapper (a child process)."""
    from usad2.bin.s3prl_runner import config_path
    from usad2.s3prl_upstream.classification_meta import override_for

    tiny = (f"config.runner.total_steps={steps},,config.runner.eval_step={steps},,"
            f"config.runner.save_step={steps},,config.runner.log_step={max(1, steps // 4)},,"
            f"config.downstream_expert.datarc.num_workers=0,,"
            f"config.downstream_expert.datarc.train_batch_size={batch_size}")
    cmd = [sys.executable, "-m", "usad2.bin.s3prl_runner", "--", "-m", "train", "-u", "usad2",
           "-k", os.path.abspath(export), "-d", "emotion", "-c", config_path("utterance_classification"),
           "--device", device, "-p", os.path.abspath(expdir), "-o", override_for(meta_dir) + ",," + tiny]
    logger.info("s3prl: %s", " ".join(cmd))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    with open(os.path.join(expdir + ".log"), "w", encoding="utf-8") as f:
        f.write(res.stdout + res.stderr)
    if res.returncode != 0:
        raise Usad2Error(f"s3prl runner failed (exit {res.returncode}); log {expdir}.log:\n"
                         + res.stderr[-2000:])


def s3prl_probe(export, train_dir, test_dir, label, out_dir, steps=200, device="cpu", force=False):
    """Run the s3prl probe; returns (and writes) its results dict."""
    if steps < 1:
        raise ConfigError(f"--steps: a positive number of s3prl steps, got {steps}")
    if not os.path.isfile(export):
        raise ConfigError(f"--export {export}: no such file (run stage 7 first)")
    fp = fingerprint({"label": label, "steps": steps}, inputs=[export, train_dir, test_dir])
    results_path = os.path.join(out_dir, "results.json")
    if force:
        clear(out_dir)
    elif is_done(out_dir, fp) and os.path.isfile(results_path):
        logger.info("s3prl probe: %s is up to date", out_dir)
        with open(results_path, encoding="utf-8") as f:
            return json.load(f)
    from usad2.s3prl_upstream.classification_meta import write_classification_meta

    counts = {split: labelled_subset(d, label, os.path.join(out_dir, "data", split))
              for split, d in (("train", train_dir), ("test", test_dir))}
    meta = os.path.join(out_dir, "meta")
    write_classification_meta(os.path.join(out_dir, "data", "train"), os.path.join(out_dir, "data", "test"),
                              meta, label=label)
    expdir = os.path.join(out_dir, "s3prl_exp")
    os.makedirs(expdir, exist_ok=True)
    run_s3prl(export, meta, expdir, steps, device)
    train_labels = load_data_dir(os.path.join(out_dir, "data", "train")).table("utt2" + label)
    test_labels = load_data_dir(os.path.join(out_dir, "data", "test")).table("utt2" + label)
    majority = Counter(v[0] for v in train_labels.values()).most_common(1)[0][0]
    chance = sum(v[0] == majority for v in test_labels.values()) / len(test_labels)
    result = {"task": f"s3prl_{label}", "accuracy": score_files(expdir), "chance": chance,
              "num_train": counts["train"], "num_test": counts["test"], "steps": steps,
              "export": os.path.abspath(export)}
    atomic_write_text(results_path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    mark_done(out_dir, fp, {"task": result["task"]})
    logger.info("s3prl probe %s: accuracy %.4f (chance %.4f, %d test files)", result["task"],
                result["accuracy"], chance, counts["test"])
    return result


def get_parser():
    p = make_parser(__doc__.splitlines()[0])
    p.add_argument("--export", required=True, help="usad2 export (stage 7's model.pt)")
    p.add_argument("--data_root", required=True, help="folder holding the train and test data dirs")
    p.add_argument("--train_set", default="train", help="training data dir name (s3prl takes its dev share)")
    p.add_argument("--test_set", default="test", help="test data dir name")
    p.add_argument("--label", default="instrument_family", help="utt2<LABEL> file of the task")
    p.add_argument("--steps", type=int, default=200, help="s3prl training steps")
    p.add_argument("--device", default="cpu", help="s3prl --device")
    p.add_argument("--out_dir", required=True, help="output folder")
    p.add_argument("--force", type=str2bool, default=False, help="redo even when the stamp matches")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logging()
    log_invocation(logger)
    s3prl_probe(args.export, os.path.join(args.data_root, args.train_set),
                os.path.join(args.data_root, args.test_set), args.label, args.out_dir, args.steps,
                args.device, args.force)
    return 0


if __name__ == "__main__":
    run_main(main)
