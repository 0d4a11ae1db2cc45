"""Offline teacher targets: run one teacher over a data dir and store chosen layers.

Work is split into `nj` contiguous shards of the sorted utterance list (Kaldi's split); each
shard is written into a temporary directory, renamed into `shards/<J>` when complete and
stamped with the fingerprint of (teacher card, checkpoint, layers, dtype, shard's utterance
list, data dir index files). A rerun skips stamped shards, so after a kill -9 only unfinished
shards are redone, and the merged scp files equal those of an uninterrupted run. Each
utterance is extracted on its own (full length, no padding), so results do not depend on the
batch or on `nj`.
"""
import json
import logging
import os
import shutil

from tqdm import tqdm

from usad2.teachers.mapping import teacher_layers
from usad2.targets.store import ShardWriter, TargetsError, layer_name, merge_shards
from usad2.utils import stamp
from usad2.utils.atomic import atomic_write_text

logger = logging.getLogger("usad2")


def default_layers(card, k=4):
    """The layers stage 4 stores for a teacher: what stage 1 distils plus the last layer.

    Stage 1 distils the card's distill_layers, else the K-sparse teacher layers floor(k·L_T/K)
    (docs/method.md#31-sparse-layer-mapping; all layers when the teacher has fewer than K).
    Stage 2 distils the last layer (docs/method.md#4-stage-2-plus-models), so it is always
    included: one targets dir then serves both stages. The teacher side of the mapping does not
    depend on the student's depth, so targets extracted once serve every student preset with the
    same K.
    """
    if card.distill_layers:
        layers = [int(x) for x in card.distill_layers]
    elif card.num_layers < k:
        layers = list(range(1, card.num_layers + 1))
    else:
        layers = teacher_layers(card.num_layers, k, name=card.name)
    return sorted(set(layers) | {card.num_layers})


def split_shards(utts, nj):
    """Contiguous split of `utts` into nj lists whose sizes differ by at most one."""
    if nj < 1:
        raise TargetsError(f"--nj must be >= 1, got {nj}")
    base, extra = divmod(len(utts), nj)
    shards, start = [], 0
    for j in range(nj):
        size = base + (1 if j < extra else 0)
        shards.append(utts[start:start + size])
        start += size
    return shards


def extract_shard(items, teacher, layers, shard_dir, fp, dtype="float16", progress=True, precision="fp32"):
    """Extract `items` [(utt, audio loader callable)] into `shard_dir` atomically, then stamp it."""
    parent = os.path.dirname(os.path.abspath(shard_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = shard_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    writer = None
    try:
        writer = ShardWriter(tmp, shard_dir, layers, dtype)
        for utt, loader in tqdm(items, desc=f"{teacher.name} {os.path.basename(shard_dir)}",
                                disable=not progress, mininterval=5):
            wave = loader()
            outputs, frame_lengths = teacher.extract(wave.unsqueeze(0), [wave.shape[0]], layers, precision=precision)
            n = int(frame_lengths[0])
            if n <= 0:
                raise TargetsError(f"{teacher.name}: utterance {utt} gave no frames "
                                   f"({wave.shape[0]} samples): too short for this teacher")
            writer.write(utt, [o[0, :n].cpu().numpy() for o in outputs])
        writer.close()
    except BaseException:  # disk full, bad audio, Ctrl-C: a partial shard must not keep filling the disk
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(shard_dir, ignore_errors=True)
    os.replace(tmp, shard_dir)
    stamp.mark_done(shard_dir, fp)


def _stamp_mtime(directory):
    try:
        return os.path.getmtime(stamp.stamp_path(directory))
    except FileNotFoundError:
        return None


def run_extraction(utt_loaders, card, build_teacher, out_dir, layers, nj=1, jobs=None, dtype="float16",
                   fingerprint_args=None, inputs=(), force=False, progress=True, precision="fp32"):
    """Extract the shards `jobs` (default all 1..nj) and, when all are done, merge them.

    utt_loaders: sorted list of (utt, loader) where loader() returns the 16 kHz waveform.
    card: the teacher's card; build_teacher(): the teacher, built only when a shard needs work,
    so a rerun over finished shards (or the merge call) never loads a model.
    precision: "fp32" or "bf16" (resolved; a torch teacher then runs under bf16 autocast; the
    caller puts it in fingerprint_args where it changes the targets).
    `force` redoes the shards of this call only (so concurrent `--job` runs never touch each
    other's shards). The merge is redone when a shard is newer than the merged output.
    Returns True when the merged output is complete.
    """
    os.makedirs(out_dir, exist_ok=True)
    base_args = dict(fingerprint_args or {}, layers=list(layers), dtype=dtype, nj=nj)
    shards = split_shards(utt_loaders, nj)

    def shard_fp(job):
        return stamp.fingerprint(dict(base_args, job=job, utts=[u for u, _ in shards[job - 1]]), inputs)

    teacher = None
    for job in jobs or range(1, nj + 1):
        shard_dir = os.path.join(out_dir, "shards", str(job))
        if not force and stamp.is_done(shard_dir, shard_fp(job)):
            logger.info("%s shard %d/%d: done already, skipping", card.name, job, nj)
            continue
        logger.info("%s shard %d/%d: %d utterances", card.name, job, nj, len(shards[job - 1]))
        teacher = teacher or build_teacher()
        extract_shard(shards[job - 1], teacher, layers, shard_dir, shard_fp(job), dtype, progress=progress,
                      precision=precision)
    shard_dirs = [os.path.join(out_dir, "shards", str(j)) for j in range(1, nj + 1)]
    if not all(stamp.is_done(d, shard_fp(j)) for j, d in enumerate(shard_dirs, 1)):
        return False
    final_fp = stamp.fingerprint(base_args, inputs)
    merged_at = _stamp_mtime(out_dir)
    if stamp.is_done(out_dir, final_fp) and all(_stamp_mtime(d) <= merged_at for d in shard_dirs):
        return True
    merge_shards(out_dir, layers, nj)
    meta = {"teacher": card.to_dict(), "layers": list(layers), "dtype": dtype, "nj": nj,
            "frame_rate": str(card.frame_rate), "frame_offset": card.frame_offset,
            "widths": [card.layer_width(k) for k in layers]}
    atomic_write_text(os.path.join(out_dir, "meta.json"), json.dumps(meta, indent=1, default=str) + "\n")
    stamp.mark_done(out_dir, final_fp)
    logger.info("%s: merged %d shards into %s (%s)", card.name, nj, out_dir,
                ", ".join(layer_name(k) + ".scp" for k in layers))
    return True
