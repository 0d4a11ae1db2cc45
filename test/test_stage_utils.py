"""Atomic writes and fingerprinted stamps: the guarantees every stage relies on."""
import os

import pytest

from usad2.utils import atomic, stamp


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic.atomic_write_text(path, "one\n")
    atomic.atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert sorted(os.listdir(path.parent)) == ["f.txt"]  # no temporary left behind


def test_atomic_write_failure_keeps_previous_content(tmp_path):
    path = tmp_path / "f.txt"
    atomic.atomic_write_text(path, "good\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_write(path) as f:
            f.write("half")
            raise RuntimeError("crash mid-write")
    assert path.read_text() == "good\n"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_dir_swaps_and_cleans(tmp_path):
    out = tmp_path / "out"
    with atomic.atomic_dir(out) as d:
        open(os.path.join(d, "a"), "w").write("1")
    with pytest.raises(ValueError):
        with atomic.atomic_dir(out) as d:
            open(os.path.join(d, "b"), "w").write("2")
            raise ValueError
    assert os.listdir(out) == ["a"]
    with atomic.atomic_dir(out) as d:
        open(os.path.join(d, "c"), "w").write("3")
    assert os.listdir(out) == ["c"]
    assert os.listdir(tmp_path) == ["out"]


def test_atomic_torch_save_roundtrip(tmp_path):
    import torch

    path = tmp_path / "ckpt.pt"
    atomic.atomic_torch_save({"w": torch.arange(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))


def test_fingerprint_tracks_args_and_input_content(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("u1 a.wav\n")
    fp = stamp.fingerprint({"nj": 2}, [data])
    assert fp == stamp.fingerprint({"nj": 2}, [data])
    assert fp != stamp.fingerprint({"nj": 3}, [data])
    (data / "wav.scp").write_text("u1 b.wav\n")
    assert fp != stamp.fingerprint({"nj": 2}, [data])
    assert stamp.fingerprint({}, [tmp_path / "missing"]) != stamp.fingerprint({}, [])


def test_stamp_done_cycle(tmp_path):
    assert not stamp.is_done(tmp_path, "abc")
    stamp.mark_done(tmp_path, "abc", info={"stage": 2})
    assert stamp.is_done(tmp_path, "abc")
    assert not stamp.is_done(tmp_path, "abd")
    (tmp_path / ".done").write_text("{not json")
    assert not stamp.is_done(tmp_path, "abc")
    stamp.clear(tmp_path)
    assert not (tmp_path / ".done").exists()


def test_check_install_passes_in_this_environment():
    from usad2.bin import check_install

    assert check_install.check_package("torch", "2.8.0")[1] is None
    line, problem = check_install.check_package("no_such_module_xyz", None)
    assert "MISSING" in line and problem
