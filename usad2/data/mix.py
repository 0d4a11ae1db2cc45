"""Stage 3 of the recipe: combine formatted sets into one training list with sampling weights.

`mix_data(train_dirs, out_dir, ...)` combines the data dirs (usad2.data.combine: id collisions
refused unless `prefix_ids`) and writes `utt2weight`, the relative rate at which the batcher
samples each utterance. No audio is copied: wav.scp keeps pointing into the input dirs.

Weights (`balance="domain"`, docs/method.md#37-training-data: the smaller domains are
upsampled until the domains balance). With b_u the utterance's input weight (its utt2weight,
else 1), dur_u its utt2dur in seconds and d(u) its domain (utt2domain; `unknown` is a domain of its own):

    M_d = sum over u in d of b_u * dur_u          (sampling mass of domain d, in seconds)
    w_u = b_u * max_d(M_d) / M_{d(u)}

so every domain's weighted mass sum_{u in d} w_u * dur_u equals max_d M_d: the domain with the
most audio keeps its weights (1 when no input weights are given) and every other domain is
upsampled by the ratio of masses. Within a domain the input weights keep their ratios.
`balance="none"` writes w_u = b_u. The dev list (optional) gets the same treatment so that a
weighted dev loss is possible.

Outputs are replaced atomically (DataDir.write) and stamped with a fingerprint of the options
and of the inputs' index files; a matching stamp skips, `force` redoes.
"""
import collections
import logging
import os

from usad2.data.combine import auto_prefixes, combine_datadirs
from usad2.data.datadir import DataDir, load_data_dir
from usad2.errors import ConfigError, DataDirError
from usad2.utils import stamp

logger = logging.getLogger("usad2")

BALANCES = ("domain", "none")


def domain_masses(utt2dur, utt2domain, base=None):
    """{domain: sum of base weight * duration} over the utterances of `utt2dur`."""
    masses = collections.defaultdict(float)
    for utt, dur in utt2dur.items():
        masses[utt2domain.get(utt, "unknown")] += (base or {}).get(utt, 1.0) * dur
    return dict(masses)


def balance_weights(utt2dur, utt2domain, base=None, balance="domain"):
    """Per-utterance sampling weights {utt: w_u} (formula in the module docstring)."""
    if balance not in BALANCES:
        raise ConfigError(f"balance {balance!r}: expected one of {', '.join(BALANCES)}")
    base = base or {}
    if balance == "none":
        return {utt: base.get(utt, 1.0) for utt in utt2dur}
    masses = domain_masses(utt2dur, utt2domain, base)
    top = max(masses.values())
    return {utt: base.get(utt, 1.0) * top / masses[utt2domain.get(utt, "unknown")]
            for utt in utt2dur}


def _load_inputs(paths):
    datadirs = []
    for path in paths:
        data = load_data_dir(path)
        if data.table("utt2dur") is None:
            raise DataDirError(f"{os.path.join(path, 'utt2dur')}: missing; mix needs durations "
                               "(run stage 2, usad2.bin.format_data, on this set first)")
        datadirs.append(data)
    return datadirs


def mix_one(inputs, out_dir, balance="domain", prefix_ids=False, force=False):
    """Combine the data dirs `inputs` into `out_dir` with utt2weight; returns a summary dict."""
    inputs, out_dir = [os.fspath(p) for p in inputs], os.fspath(out_dir)
    if not inputs:
        raise ConfigError(f"mix into {out_dir}: no input data dirs given")
    if balance not in BALANCES:
        raise ConfigError(f"balance {balance!r}: expected one of {', '.join(BALANCES)}")
    args = {"stage": "mix_data", "version": 1, "inputs": inputs, "balance": balance,
            "prefix_ids": prefix_ids}
    fp = stamp.fingerprint(args, inputs)
    if not force and stamp.is_done(out_dir, fp):
        logger.info("mix: %s is up to date (stamp matches); skipping", out_dir)
        return {"skipped": True}
    prefixes = auto_prefixes(inputs) if prefix_ids else None
    combined = combine_datadirs(_load_inputs(inputs), prefixes)
    tables = dict(combined.tables)
    utt2domain = tables.get("utt2domain", {})
    tables["utt2weight"] = balance_weights(tables["utt2dur"], utt2domain,
                                           tables.get("utt2weight"), balance)
    mixed = DataDir._from_tables(tables, combined.allow_pipes)
    stamp.clear(out_dir)
    mixed.write(out_dir)
    summary = _summary(tables, inputs)
    stamp.mark_done(out_dir, fp, info=summary)
    _log_summary(out_dir, summary, balance)
    return {"skipped": False, **summary}


def mix_data(train_dirs, out_dir, dev_dirs=(), dev_out=None, balance="domain",
             prefix_ids=False, force=False):
    """Stage 3: the training mix (and, when `dev_dirs` are given, the dev mix `dev_out`)."""
    if bool(dev_dirs) != bool(dev_out):
        raise ConfigError("give the dev sets and the dev output together (--dev and --dev_out)")
    result = {"train": mix_one(train_dirs, out_dir, balance, prefix_ids, force)}
    if dev_dirs:
        result["dev"] = mix_one(dev_dirs, dev_out, balance, prefix_ids, force)
    return result


def _summary(tables, inputs):
    """Seconds, utterances and weighted seconds per domain."""
    per = {}
    for utt, dur in tables["utt2dur"].items():
        entry = per.setdefault(tables.get("utt2domain", {}).get(utt, "unknown"),
                               {"utterances": 0, "seconds": 0.0, "weighted_seconds": 0.0})
        entry["utterances"] += 1
        entry["seconds"] += dur
        entry["weighted_seconds"] += dur * tables["utt2weight"][utt]
    for entry in per.values():
        entry["seconds"] = round(entry["seconds"], 3)
        entry["weighted_seconds"] = round(entry["weighted_seconds"], 3)
    return {"inputs": inputs, "utterances": len(tables["utt2dur"]),
            "domains": dict(sorted(per.items()))}


def _log_summary(out_dir, summary, balance):
    parts = [f"{d}: {e['utterances']} utts, {e['seconds'] / 3600:.3f} h, weighted "
             f"{e['weighted_seconds'] / 3600:.3f} h" for d, e in summary["domains"].items()]
    logger.info("mix (balance=%s): %d inputs -> %s, %d utterances; %s", balance,
                len(summary["inputs"]), out_dir, summary["utterances"], "; ".join(parts))
