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
