"""The README's client sections run as pasted (issue 15 item 4): s3prl's S3PRLUpstream / ESPnet,
HEAR, X-ARES, XARES-LLM and transformers, each on a tiny export, from the repository root.

Every ```sh block of README.md between "### ESPnet and s3prl.nn.S3PRLUpstream" and
"### Teachers" runs in bash (-e -o pipefail) with EXP pointing at a temporary experiment dir and
the venv first on PATH; lines starting with "#" are comments (the xares.run / xares_llm.run lines
need those benchmarks' data downloads and, for XARES-LLM, a package not on the registry).

With $USAD2_README_EXP set to a real experiment dir (CI: the tiny recipe's `exp/ci_tiny_plus_tiny`),
the blocks run on that export instead, as a user would after the quick start; the printed shapes
then depend on the model, so only each client's success line is checked.
"""
import os
import re
import subprocess
import sys

import pytest
import torch

from usad2.models.export import save_export
from usad2.models.presets import get_preset
from usad2.models.wave_encoder import Usad2Model

FIRST, LAST = "### ESPnet and s3prl.nn.S3PRLUpstream", "### Teachers"
EXPECTED = {  # heading -> what the block prints on the tiny 50 Hz export
    "ESPnet and s3prl.nn.S3PRLUpstream": "5 hidden states (2, 100, 64) [100, 50]",
    "HEAR": "Looks good!",
    "X-ARES": "X-ARES checker: ok",
    "XARES-LLM": "(2, 49, 64) [49, 49] 64",
    "Hugging Face transformers": "5 hidden states (2, 49, 64) [49, 49]",
}
SUCCESS = {  # what every export prints, whatever its size
    "ESPnet and s3prl.nn.S3PRLUpstream": "hidden states (2, 100, ",
    "HEAR": "Looks good!",
    "X-ARES": "X-ARES checker: ok",
    "XARES-LLM": "(2, 49, ",
    "Hugging Face transformers": "hidden states (2, 49, ",
}
README_EXP = os.environ.get("USAD2_README_EXP")


def _blocks(repo_dir):
    """{section heading: its sh block} for the client sections of README.md."""
    text = (repo_dir / "README.md").read_text(encoding="utf-8")
    assert FIRST in text and LAST in text
    out = {}
    for part in text[text.index(FIRST):text.index(LAST)].split("\n### ")[0:]:
        heading = part.splitlines()[0].lstrip("# ").strip()
        found = re.findall(r"^```sh\n(.*?)^```", part, flags=re.S | re.M)
        if found:
            assert len(found) == 1, heading
            out[heading] = found[0]
    return out


def test_exp_is_set_before_the_client_sections(repo_dir):
    text = (repo_dir / "README.md").read_text(encoding="utf-8")
    before = text[text.index("## Using the pieces"):text.index(FIRST)]
    assert re.search(r"^```sh\nEXP=\S+", before, flags=re.M)
    assert set(_blocks(repo_dir)) == set(EXPECTED)


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    if README_EXP:
        from pathlib import Path

        assert (Path(README_EXP) / "export" / "model.pt").is_file(), f"{README_EXP}: no export/model.pt"
        return Path(README_EXP)
    root = tmp_path_factory.mktemp("readme_exp")
    torch.manual_seed(0)
    save_export(Usad2Model(get_preset("tiny")), root / "export" / "model.pt")
    return root


@pytest.mark.parametrize("client", sorted(EXPECTED))
def test_readme_block_runs(repo_dir, exp, tmp_path, client):
    blocks = _blocks(repo_dir)
    assert client in blocks, f"README has no sh block under ### {client}"
    if client == "HEAR":
        pytest.importorskip("hearvalidator")
    if client == "X-ARES":
        pytest.importorskip("xares.audio_encoder_checker")
    venv_bin = os.path.dirname(sys.executable)
    env = dict(os.environ, EXP=str(exp), PATH=venv_bin + os.pathsep + os.environ["PATH"], OMP_NUM_THREADS="1",
               HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", blocks[client]], cwd=repo_dir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (SUCCESS if README_EXP else EXPECTED)[client] in proc.stdout, proc.stdout[-2000:]
    if client == "Hugging Face transformers":
        assert (exp / "export" / "hf" / "README.md").is_file()
