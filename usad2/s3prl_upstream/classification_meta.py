"""Turn Kaldi data dirs with an `utt2<label>` file into the inputs of s3prl's `emotion` downstream.

s3prl's downstreams each read their own corpus layout; `emotion` is the one that takes an
arbitrary label set, from two JSON files (see configs/utterance_classification.yaml):

    <out>/Session1/train_meta_data.json, <out>/Session1/test_meta_data.json
    {"labels": {"<label>": <index>, ...}, "meta_data": [{"path": "<wav>", "label": "<label>"}, ...]}

Paths are written absolute, so s3prl's `root` option does not matter (joining a root with an
absolute path keeps the path). The emotion downstream loads whole files with torchaudio and
resamples every file with the rate of the first one, so the data dirs must be plain files (no
`segments`, no pipes) at one sample rate: the formatted `dump/raw/<set>` dirs are (16 kHz).
Labels are indexed in sorted order over train and test together.
"""
import json
import os

from usad2.data.datadir import load_data_dir
from usad2.errors import ConfigError, DataDirError
from usad2.utils.atomic import atomic_write_text

SESSION = "Session1"  # the emotion downstream's test_fold "fold1"


def utterance_labels(data_dir, label="label"):
    """[(absolute wav path, label)] of a data dir, in utterance order; every problem is raised."""
    data = load_data_dir(data_dir)
    if data.segments is not None:
        raise DataDirError(f"{data_dir}/segments: s3prl's emotion downstream reads whole files; "
                           "use a formatted data dir without segments")
    labels = data.table("utt2" + label)
    if labels is None:
        raise DataDirError(f"{data_dir}: no utt2{label} file")
    items, problems = [], []
    for utt in data.utt_ids:
        tokens = labels.get(utt)
        if tokens is None or len(tokens) != 1:
            problems.append(f"{data_dir}/utt2{label}: utterance {utt} needs exactly one label, "
                            f"has {list(tokens) if tokens else 'none'}")
            continue
        items.append((os.path.abspath(data.wav_scp[utt]), tokens[0]))
    if problems:
        raise DataDirError("\n".join(problems[:20]))
    return items


def write_classification_meta(train_dir, test_dir, out_dir, label="label"):
    """Write the two JSON files for `-d emotion`; returns the label -> index mapping."""
    train = utterance_labels(train_dir, label)
    test = utterance_labels(test_dir, label)
    index = {name: i for i, name in enumerate(sorted({lab for _, lab in train + test}))}
    for split, items in (("train", train), ("test", test)):
        doc = {"labels": index, "meta_data": [{"path": p, "label": lab} for p, lab in items]}
        atomic_write_text(os.path.join(out_dir, SESSION, f"{split}_meta_data.json"),
                          json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return index


def override_for(meta_dir):
    """The `-o` value that points the utterance_classification config at `meta_dir`."""
    meta_dir = os.path.abspath(meta_dir)
    if "=" in meta_dir or ",," in meta_dir:  # s3prl splits -o on ",," and "="
        raise ConfigError(f"{meta_dir}: s3prl's -o cannot carry a path with '=' or ',,'")
    return (f"config.downstream_expert.datarc.root='/',,"
            f"config.downstream_expert.datarc.meta_data={meta_dir!r}")
