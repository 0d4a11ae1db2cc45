"""Infer each utterance's domain posterior over a data dir and write `utt2domain_post`.

Every utterance of the data dir is tagged on its own audio: with a `segments` file the
utterances are the segments, so each segment keeps its own posterior (a podcast recording cut
into segments gets speech here and music there). Frame posteriors are pooled per utterance
(`tagger.pool`) and written rounded to 6 decimals (still summing to 1 within 1e-5).

Outputs (atomic; docs/formats.md): `utt2domain_post`, and with `hard=True` a `utt2domain` of
each posterior's most probable domain. By default they go into the data dir itself, file by file
(other files and stamps are kept); a hard `utt2domain` is never written over existing labels
in place (give `out`). With `out`, a copy of the data dir with the new files is written there.
A stamp `.infer_domains.done` (the tagger, its mapping, the data dir's index files) makes a rerun
a no-op and holds the summary: hard-domain counts, mean posterior and, where the data dir has
labels, the confusion of labels against inferred domains and their agreement.
"""
import json
import logging
import os

import numpy as np
import torch

from usad2.audio.io import load_audio
from usad2.data.datadir import DataDir, load_data_dir
from usad2.domains.agreement import confusion_table
from usad2.domains.mapping import DOMAINS
from usad2.domains.tagger import Tagger, pool, read_tagger
from usad2.errors import DataDirError
from usad2.utils import stamp
from usad2.utils.atomic import atomic_write_text

log = logging.getLogger(__name__)
STAMP = ".infer_domains.done"
BATCH_UTTERANCES = 8


def rounded(posterior):
    """A posterior rounded to 6 decimals (one-hot stays exactly one-hot)."""
    return tuple(round(float(p), 6) for p in posterior)


def tag_utterances(tagger, data, progress=None):
    """{utt: (p_speech, p_audio, p_music)} for every utterance of a DataDir."""
    utts = data.utt_ids
    out = {}
    for start in range(0, len(utts), BATCH_UTTERANCES):
        chunk = utts[start:start + BATCH_UTTERANCES]
        waves = []
        for utt in chunk:
            src = data.source(utt)
            waves.append(load_audio(src.path, name=utt, allow_pipes=data.allow_pipes,
                                    start=src.start or None, end=src.end))
        lengths = torch.tensor([len(w) for w in waves])
        batch = torch.zeros(len(waves), int(lengths.max()))
        for b, w in enumerate(waves):
            batch[b, :len(w)] = w
        for utt, frames in zip(chunk, tagger.frame_posteriors(batch, lengths)):
            out[utt] = rounded(pool(frames))
        if progress:
            progress(len(chunk))
    return out


def _fingerprint(spec, data_path, hard):
    with open(spec.mapping, encoding="utf-8") as f:
        mapping = f.read()
    args = {"card": spec.card, "layer": spec.layer, "activation": spec.activation,
            "mapping": mapping, "class_map": spec.class_map, "hard": hard}
    return stamp.fingerprint(args, [os.path.join(data_path, n) for n in ("wav.scp", "segments")])


def infer_domains(data_path, out=None, tagger="yamnet", hard=False, force=False, cache=None,
                  card_dirs=None, allow_pipes=False, device="cpu", progress=None):
    """Tag every utterance of the data dir `data_path`; write the files; return the summary."""
    data_path = os.fspath(data_path)
    out = os.fspath(out) if out else data_path
    in_place = os.path.abspath(out) == os.path.abspath(data_path)
    spec = read_tagger(tagger)
    fp = _fingerprint(spec, data_path, hard)
    stamp_file = os.path.join(out, STAMP)
    if not force and _stamped(stamp_file, fp):
        log.info("%s: domain posteriors are up to date; skipping", out)
        with open(stamp_file, encoding="utf-8") as f:
            return json.load(f)["summary"]
    data = load_data_dir(data_path, allow_pipes=allow_pipes)
    if hard and in_place and data.table("utt2domain") is not None:
        raise DataDirError(f"{data_path}/utt2domain exists: infer_domains --hard true does not "
                           "overwrite labels in place; give --out DIR for a copy with inferred labels")
    model = Tagger(spec, cache=cache, card_dirs=card_dirs, device=device)
    log.info("%s: tagging %d utterances with %s (card %s, layer %d)", data_path, len(data.utt_ids),
             model.name, spec.card, spec.layer)
    posteriors = tag_utterances(model, data, progress)
    new = {"utt2domain_post": posteriors}
    if hard:
        new["utt2domain"] = {u: DOMAINS[int(np.argmax(p))] for u, p in posteriors.items()}
    summary = _summary(data, posteriors, model.name)
    if in_place:
        updated = DataDir._from_tables({**data.tables, **new}, data.allow_pipes)
        texts = updated.to_texts()
        updated.check(data_path, texts=texts)  # the validator reads what is about to be written
        for name in new:
            atomic_write_text(os.path.join(out, name), texts[name])
    else:
        DataDir._from_tables({**data.tables, **new}, data.allow_pipes).write(out)
    atomic_write_text(stamp_file, json.dumps({"fingerprint": fp, "summary": summary}, indent=1))
    log.info("%s: %s", out, json.dumps(summary))
    return summary


def _stamped(path, fp):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("fingerprint") == fp
    except (FileNotFoundError, ValueError):
        return False


def _summary(data, posteriors, tagger_name):
    hard = [DOMAINS[int(np.argmax(p))] for p in posteriors.values()]
    mean = np.mean(np.array(list(posteriors.values())), axis=0)
    summary = {"tagger": tagger_name, "utterances": len(posteriors),
               "hard_counts": {d: hard.count(d) for d in DOMAINS},
               "mean_posterior": {d: round(float(m), 4) for d, m in zip(DOMAINS, mean)}}
    labels = data.table("utt2domain")
    if labels is not None:
        table, agreement = confusion_table(labels, posteriors)
        summary["confusion"] = table
        summary["agreement"] = None if agreement is None else round(agreement, 4)
    return summary

