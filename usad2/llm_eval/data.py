"""Tasks as instructions: every utterance-level label of the probe suite becomes a question.

The task list is the probe's (usad2.probe.tasks: same label files, same train/dev/test data
dirs), restricted to its utterance-level single-label tasks: an LLM answers a question about a
whole clip, and frame-level tasks (note tables) have no text answer. Each labelled utterance of
a task gives one example: (utterance, task, question, answer = the label as text), e.g.
("Which instrument family is playing?", "brass"). All tasks are trained jointly, as XARES-LLM's
classification track does.

One open-ended task, `caption`: "Describe the audio." answered by a caption composed from all of
the clip's evaluated labels in a fixed order, `"<domain>; <task> <label>; ..."` (e.g.
`speech; word yellow; word category colour; language it`), so it is scored with a text metric
(chrF) and rewards every fact the model gets right.

Like the probe, a task whose test labels are mostly unseen in training (the demo corpus's
held-out voices) is skipped with a log line (its answers could never be learnt), and so is one
with fewer than two training classes; a skipped task's labels are not in the captions either.
"""
import dataclasses
import logging
import os

from usad2.data.datadir import load_data_dir
from usad2.errors import ConfigError, DataDirError
from usad2.probe.run import MIN_SEEN_FRACTION
from usad2.probe.tasks import available_tasks

logger = logging.getLogger(__name__)

CAPTION = "caption"
CAPTION_QUESTION = "Describe the audio."
QUESTIONS = {
    "word": "Which word is spoken?",
    "word_category": "What kind of thing does the spoken word name?",
    "language": "Which language is spoken?",
    "voice": "Which voice is speaking?",
    "sound_class": "What kind of sound is this?",
    "drum_class": "Which drum is played?",
    "instrument_family": "Which instrument family is playing?",
    "pitch_class": "Which pitch class is the note?",
    "chord_quality": "What is the quality of the chord?",
    "style": "Which musical style is this?",
}


def question(task_name):
    """The instruction of a task (a generic one for tasks of other suites)."""
    return QUESTIONS.get(task_name, f"What is the {task_name.replace('_', ' ')}?")


@dataclasses.dataclass(frozen=True)
class Example:
    utt: str
    task: str
    question: str
    answer: str


@dataclasses.dataclass
class TaskSet:
    """The evaluated tasks: {name: domain}, {name: sorted training answers} and examples per role."""

    domains: dict
    label_sets: dict
    examples: dict   # {"train"/"dev"/"test": [Example]}
    data_dirs: dict  # {"train"/"dev"/"test": data dir path}


def _answers(table, where):
    out = {}
    for utt, tokens in table.items():
        text = (tokens if isinstance(tokens, str) else " ".join(tokens)).strip()
        if not text:
            raise DataDirError(f"{where}: utterance {utt} has an empty label")
        out[utt] = text
    return out


def build_tasks(tasks, data_root, caption=True):
    """TaskSet of the suite `tasks` (usad2.probe.tasks.Task) on the data dirs under `data_root`."""
    usable = [(t, label) for t, label in available_tasks(tasks, data_root) if t.level == "utterance"
              and not t.multi_label]
    if not usable:
        raise ConfigError(f"{data_root}: no utterance-level single-label task of the suite has its label files "
                          f"in all of its train/dev/test data dirs")
    roles = usable[0][0].splits()
    dirs = {role: os.path.join(data_root, name) for role, name in roles.items()}
    data = {role: load_data_dir(path) for role, path in dirs.items()}
    domains, label_sets, answers = {}, {}, {}
    for task, label in usable:
        tables = {role: _answers(data[role].table(label) or {}, os.path.join(dirs[role], label)) for role in dirs}
        train_labels = set(tables["train"].values())
        test = list(tables["test"].values())
        seen = sum(a in train_labels for a in test) / max(1, len(test))
        if len(train_labels) < 2:
            logger.info("llm_eval: task %s skipped: fewer than two training classes", task.name)
            continue
        if seen < MIN_SEEN_FRACTION:
            logger.info("llm_eval: task %s skipped: only %.0f%% of the test answers occur in training",
                        task.name, 100 * seen)
            continue
        domains[task.name], label_sets[task.name], answers[task.name] = task.domain, sorted(train_labels), tables
    if not domains:
        raise ConfigError(f"{data_root}: every task was skipped (see the log)")
    examples = {role: [] for role in dirs}
    for role in dirs:
        for name in domains:
            for utt, answer in sorted(answers[name][role].items()):
                examples[role].append(Example(utt, name, question(name), answer))
        if caption:
            examples[role] += _captions(data[role], {n: answers[n][role] for n in domains}, dirs[role])
    return TaskSet(domains, label_sets, examples, dirs)


def _captions(data, answers, where):
    """One caption example per utterance with at least one evaluated label."""
    domain = data.table("utt2domain") or {}
    out = []
    for utt in data.utt_ids:
        facts = [f"{name.replace('_', ' ')} {answers[name][utt]}" for name in sorted(answers) if utt in answers[name]]
        if not facts:
            continue
        if utt in domain:  # utt2domain is read as one string per utterance, label files as token tuples
            facts.insert(0, domain[utt] if isinstance(domain[utt], str) else " ".join(domain[utt]))
        out.append(Example(utt, CAPTION, CAPTION_QUESTION, "; ".join(facts)))
    if not out:
        raise DataDirError(f"{where}: no utterance has a label of the evaluated tasks (no captions)")
    return out
