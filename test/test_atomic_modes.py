"""Atomic writes honour the umask (issue 15 item 5): mkstemp's 0600 must not leak into outputs."""
import os
import stat

import pytest
import torch

from usad2.utils.atomic import atomic_dir, atomic_torch_save, atomic_write_text, current_umask


@pytest.fixture
def umask():
    """Run the test under a chosen umask; the old one is restored afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                     (0o077, 0o600, 0o700)])
def test_files_and_dirs_get_the_umask_mode(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.txt", "x\n")
    atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "m.pt")
    with atomic_dir(tmp_path / "d") as d:
        atomic_write_text(os.path.join(d, "inner.txt"), "y\n")
    assert _mode(tmp_path / "a.txt") == file_mode
    assert _mode(tmp_path / "m.pt") == file_mode
    assert _mode(tmp_path / "d") == dir_mode
    assert _mode(tmp_path / "d" / "inner.txt") == file_mode
    # the same as a plain open() would give
    (tmp_path / "plain.txt").write_text("z")
    assert _mode(tmp_path / "plain.txt") == file_mode


def test_rewrite_keeps_umask_mode(tmp_path, umask):
    umask(0o022)
    atomic_write_text(tmp_path / "a.txt", "1")
    atomic_write_text(tmp_path / "a.txt", "2")
    assert (tmp_path / "a.txt").read_text() == "2" and _mode(tmp_path / "a.txt") == 0o644
