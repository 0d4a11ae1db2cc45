"""Offline teacher targets as Kaldi ark/scp files (kaldiio), one pair per layer and shard.

Layout of a targets dir (`dump/targets/<teacher>/<set>/`):

    meta.json              teacher card, layers, dtype, frame rate/offset, number of shards
    shards/<J>/L<k>.ark    layer k of shard J; entries are float16 NumPy matrices (T, D)
    shards/<J>/L<k>.scp    `<utt> <abs path of the ark>:<byte offset>` (kaldiio-compatible)
    shards/<J>/.done       stamp of a complete shard
    L<k>.scp               all shards merged, sorted by utterance id
    utt2num_frames         teacher frames per utterance

Entries are written in kaldiio's NumPy entry format (an `NPY` marker after the key), the only
kaldiio format that stores float16; float32 (`FM`) and Kaldi compressed (`CM`) entries are read
too. The reader never unpickles: a `PKL` entry is rejected and `np.load` runs with
`allow_pickle=False`. scp paths are absolute (so kaldiio.load_scp works from any directory);
relative paths are resolved against the scp file's directory.
"""
import io
import os

import numpy as np

from usad2.errors import Usad2Error
from usad2.utils.atomic import atomic_write_text

DTYPES = {"float16": np.float16, "float32": np.float32}


class TargetsError(Usad2Error):
    """An offline targets file is missing, malformed or unsafe."""


def layer_name(layer):
    return f"L{int(layer)}"


class ShardWriter:
    """Writes one shard's per-layer ark files; the scp files appear only on `close()`.

    The caller writes into a temporary shard dir and renames it when complete, so the scp
    lines are written with the final ark paths given as `final_dir`.
    """

    def __init__(self, tmp_dir, final_dir, layers, dtype="float16"):
        if dtype not in DTYPES:
            raise TargetsError(f"unsupported targets dtype {dtype!r}; choose from {sorted(DTYPES)}")
        self.tmp_dir = tmp_dir
        self.final_dir = os.path.abspath(final_dir)
        self.layers = list(layers)
        self.dtype = DTYPES[dtype]
        self.arks = {k: open(os.path.join(tmp_dir, layer_name(k) + ".ark"), "wb") for k in self.layers}
        self.scp_lines = {k: [] for k in self.layers}
        self.num_frames = []

    def write(self, utt, arrays):
        """Store one utterance: `arrays` has one (T, D) array per layer, in `layers` order."""
        import kaldiio

        if len(utt.split()) != 1:
            raise TargetsError(f"utterance id {utt!r} contains whitespace")
        for k, array in zip(self.layers, arrays):
            fd = self.arks[k]
            array = np.ascontiguousarray(np.asarray(array, dtype=self.dtype))
            if array.ndim != 2:
                raise TargetsError(f"{utt}: layer {k} target has shape {array.shape}, expected (T, D)")
            start = fd.tell()
            write_function = "numpy" if self.dtype == np.float16 else None
            kaldiio.save_ark(fd, {utt: array}, write_function=write_function)
            offset = start + len(utt.encode()) + 1
            ark_path = os.path.join(self.final_dir, layer_name(k) + ".ark")
            self.scp_lines[k].append(f"{utt} {ark_path}:{offset}\n")
        self.num_frames.append(f"{utt} {np.shape(arrays[0])[0]}\n")

    def abort(self):
        """Close the ark files without writing any scp (the caller removes the temporary dir)."""
        for fd in self.arks.values():
            try:
                fd.close()
            except OSError:  # the buffered tail cannot be flushed (disk full): nothing to keep
                pass

    def close(self):
        for k, fd in self.arks.items():
            fd.flush()
            os.fsync(fd.fileno())
            fd.close()
            with open(os.path.join(self.tmp_dir, layer_name(k) + ".scp"), "w", encoding="utf-8") as f:
                f.writelines(self.scp_lines[k])
        with open(os.path.join(self.tmp_dir, "utt2num_frames"), "w", encoding="utf-8") as f:
            f.writelines(self.num_frames)


def read_entry(ark_path, offset, name="?"):
    """Read one matrix at `ark_path:offset` without ever unpickling."""
    from kaldiio.matio import read_kaldi

    try:
        with open(ark_path, "rb") as fd:
            fd.seek(offset)
            head = fd.read(3)
            if head == b"PKL":
                raise TargetsError(f"{ark_path}:{offset} ({name}): pickled entries are refused")
            if head != b"NPY" and head[:2] != b"\0B":
                raise TargetsError(f"{ark_path}:{offset} ({name}): not a binary Kaldi or NumPy entry")
            fd.seek(offset)
            array = read_kaldi(fd, load_kwargs={"allow_pickle": False} if head == b"NPY" else None)
    except FileNotFoundError:
        raise TargetsError(f"{name}: ark file {ark_path} does not exist") from None
    except TargetsError:
        raise
    except Exception as e:  # kaldiio raises many kinds on truncated or corrupt data
        raise TargetsError(f"{ark_path}:{offset} ({name}): unreadable entry ({type(e).__name__}: {e})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise TargetsError(f"{ark_path}:{offset} ({name}): expected a matrix")
    return array


def read_scp(scp_path):
    """Parse an scp file into {utt: (abs ark path, offset)}; errors name the line."""
    base = os.path.dirname(os.path.abspath(scp_path))
    index = {}
    with open(scp_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2 or ":" not in parts[1]:
                raise TargetsError(f"{scp_path}:{lineno}: expected '<utt> <ark>:<offset>'")
            utt, loc = parts
            path, _, offset = loc.rpartition(":")
            if not offset.isdigit():
                raise TargetsError(f"{scp_path}:{lineno}: bad offset {offset!r}")
            if utt in index:
                raise TargetsError(f"{scp_path}:{lineno}: duplicate utterance {utt}")
            index[utt] = (os.path.join(base, path), int(offset))
    return index


class TargetsReader:
    """Random access to a targets dir: `reader.get(utt, layers) -> list of (T, D) float32`."""

    def __init__(self, targets_dir):
        import json

        self.dir = targets_dir
        meta_path = os.path.join(targets_dir, "meta.json")
        if not os.path.exists(meta_path):
            raise TargetsError(f"{targets_dir}: no meta.json (targets not extracted or incomplete)")
        with open(meta_path, encoding="utf-8") as f:
            self.meta = json.load(f)
        self.layers = list(self.meta["layers"])
        self.index = {}
        for k in self.layers:
            scp = os.path.join(targets_dir, layer_name(k) + ".scp")
            if not os.path.exists(scp):
                raise TargetsError(f"{targets_dir}: {os.path.basename(scp)} missing (extraction unfinished?)")
            self.index[k] = read_scp(scp)

    def utterances(self):
        return sorted(self.index[self.layers[0]])

    def get(self, utt, layers=None):
        out = []
        for k in layers or self.layers:
            if k not in self.index:
                raise TargetsError(f"{self.dir}: layer {k} was not extracted (have {self.layers})")
            if utt not in self.index[k]:
                raise TargetsError(f"{self.dir}: no targets for utterance {utt} (layer {k})")
            path, offset = self.index[k][utt]
            out.append(read_entry(path, offset, name=utt).astype(np.float32))
        return out


def merge_shards(targets_dir, layers, num_shards):
    """Concatenate the shards' scp files into sorted top-level scps and utt2num_frames."""
    names = [layer_name(k) + ".scp" for k in layers] + ["utt2num_frames"]
    merged = {name: [] for name in names}
    for job in range(1, num_shards + 1):
        shard = os.path.join(targets_dir, "shards", str(job))
        for name in names:
            with open(os.path.join(shard, name), encoding="utf-8") as f:
                merged[name].extend(f.readlines())
    for name in names:
        lines = sorted(merged[name], key=lambda line: line.split(" ", 1)[0].encode())
        atomic_write_text(os.path.join(targets_dir, name), "".join(lines))


def npy_bytes(array):
    """Size in bytes of `array` saved as a float32 .npy (the benchmark's baseline)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array, dtype=np.float32))
    return buf.tell()
