"""Offline target storage: float16 round trip, kaldiio compatibility, refusal of pickles."""
import json
import os

import kaldiio
import numpy as np
import pytest

from usad2.targets.store import ShardWriter, TargetsError, TargetsReader, merge_shards, read_scp


def write_shard(root, job, items, layers=(3, 6), dtype="float16"):
    shard = os.path.join(root, "shards", str(job))
    os.makedirs(shard)
    writer = ShardWriter(shard, shard, layers, dtype)
    for utt, arrays in items:
        writer.write(utt, arrays)
    writer.close()


def make_targets(root, rng):
    data = {f"utt{i}": [rng.standard_normal((5 + i, 4)), rng.standard_normal((5 + i, 2))] for i in range(4)}
    write_shard(root, 1, [(u, data[u]) for u in ("utt2", "utt3")])
    write_shard(root, 2, [(u, data[u]) for u in ("utt0", "utt1")])
    merge_shards(root, [3, 6], 2)
    with open(os.path.join(root, "meta.json"), "w") as f:
        json.dump({"layers": [3, 6]}, f)
    return data


def test_roundtrip_float16_sorted_merge(tmp_path):
    rng = np.random.default_rng(0)
    data = make_targets(str(tmp_path), rng)
    reader = TargetsReader(str(tmp_path))
    assert reader.utterances() == ["utt0", "utt1", "utt2", "utt3"]
    for utt, arrays in data.items():
        got = reader.get(utt)
        for g, a in zip(got, arrays):
            assert g.dtype == np.float32 and g.shape == a.shape
            np.testing.assert_allclose(g, a.astype(np.float16).astype(np.float32))
    assert (tmp_path / "utt2num_frames").read_text().split("\n")[:2] == ["utt0 5", "utt1 6"]
    # kaldiio reads the same scp from any working directory (absolute ark paths)
    loaded = kaldiio.load_scp(str(tmp_path / "L3.scp"))
    assert np.array_equal(loaded["utt2"], reader.get("utt2", [3])[0].astype(np.float16))


def test_float32_entries(tmp_path):
    shard = tmp_path / "shards" / "1"
    shard.mkdir(parents=True)
    w = ShardWriter(str(shard), str(shard), [1], "float32")
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    w.write("u", [a])
    w.close()
    path, offset = read_scp(str(shard / "L1.scp"))["u"]
    from usad2.targets.store import read_entry

    assert np.array_equal(read_entry(path, offset), a)


def test_pickled_entry_refused(tmp_path):
    ark = tmp_path / "evil.ark"
    kaldiio.save_ark(str(ark), {"u": np.zeros((2, 2))}, write_function="pickle")
    (tmp_path / "L1.scp").write_text(f"u {ark}:2\n")
    (tmp_path / "meta.json").write_text('{"layers": [1]}')
    with pytest.raises(TargetsError, match="pickled entries are refused"):
        TargetsReader(str(tmp_path)).get("u")


def test_errors_name_file_and_line(tmp_path):
    (tmp_path / "L1.scp").write_text("u1 a.ark:12\nu2 b.ark\n")
    with pytest.raises(TargetsError, match=r"L1.scp:2"):
        read_scp(str(tmp_path / "L1.scp"))
    with pytest.raises(TargetsError, match="no meta.json"):
        TargetsReader(str(tmp_path / "nothing"))
    rng = np.random.default_rng(1)
    make_targets(str(tmp_path / "t"), rng)
    reader = TargetsReader(str(tmp_path / "t"))
    with pytest.raises(TargetsError, match="no targets for utterance nope"):
        reader.get("nope")
    # truncated ark: a clear error, not a deep kaldiio exception
    ark = tmp_path / "t" / "shards" / "1" / "L3.ark"
    ark.write_bytes(ark.read_bytes()[:20])
    with pytest.raises(TargetsError, match="utt2"):
        reader.get("utt2", [3])
