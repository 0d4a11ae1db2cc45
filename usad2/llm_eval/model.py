"""Frozen audio tokens -> layer weighting + linear projector -> causal LM with LoRA (XARES-LLM's layout).

- Audio tokens (usad2.llm_eval.tokens) are standardised per layer and dimension with training
  statistics, combined as the probe combines layers (usad2.probe.heads.LayerProbe: a learned
  softmax-weighted sum, narrower layers zero-padded, or one chosen layer) and mapped by ONE
  linear layer to the LM's hidden size: the projector. LayerProbe with `hidden=0` is exactly
  that (its head is the projector).
- The LM is frozen except for LoRA adapters (peft): rank 8, alpha 32, dropout 0.1 on every
  linear layer of the decoder (peft's "all-linear": attention and MLP projections, not the
  output head), as XARES-LLM trains it.
- Sequence layout: `[audio tokens][prompt][answer][end]`, audio embeddings BEFORE the text
  prompt, prompt = `"<question> Answer:"` (plain text: the instruct model's chat template and its
  default system message would add about 25 tokens to every example on a CPU budget; LoRA learns
  the format), answer = `" <label text>"`, end = the tokenizer's turn end (decoder.end_token_id).
  The loss is the LM's cross-entropy on the answer and end tokens only.
- Batches are LEFT-padded (so generation continues every row at the same position) with
  explicit position ids counting only real tokens; greedy decoding with the KV cache stops at the
  end token or `max_new_tokens`.
"""
import dataclasses

import torch
from torch import nn

from usad2.probe.heads import LayerProbe

PROMPT_SUFFIX = " Answer:"
IGNORE = -100


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.1


def add_lora(lm, settings=LoraSettings()):
    """The peft model: LoRA adapters on every linear layer of `lm` (its own weights stay frozen)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules="all-linear", task_type="CAUSAL_LM", bias="none")
    return get_peft_model(lm, config)


class AudioLLM(nn.Module):
    """Projector (+ layer weights) and the LoRA-adapted LM; only their trainable parts are saved."""

    def __init__(self, lm, tokenizer, widths, stats, end_id, layer="weighted", lora=LoraSettings()):
        super().__init__()
        self.tokenizer, self.end_id = tokenizer, int(end_id)
        hidden = lm.get_input_embeddings().weight.shape[1]
        self.projector = LayerProbe(widths, hidden, layer, hidden=0)
        for i, (mean, std) in enumerate(stats):
            self.register_buffer(f"mean{i}", mean, persistent=False)
            self.register_buffer(f"std{i}", std, persistent=False)
        self.num_layers = len(widths)
        self.lm = add_lora(lm, lora)
        self._text_cache = {}

    # ---------------------------------------------------------------- trainable state
    def trainable_state(self):
        return {k: v.detach().clone() for k, v in self.named_parameters() if v.requires_grad}

    def load_trainable_state(self, state, where):
        from usad2.errors import CheckpointError

        own = {k for k, v in self.named_parameters() if v.requires_grad}
        if set(state) != own:
            missing, extra = sorted(own - set(state))[:3], sorted(set(state) - own)[:3]
            raise CheckpointError(f"{where}: trainable weights do not match this model (missing {missing}, "
                                  f"unexpected {extra}): another --llm, --model or --layer?")
        self.load_state_dict(state, strict=False)

    # ---------------------------------------------------------------- inputs
    def _ids(self, text):
        if text not in self._text_cache:
            self._text_cache[text] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._text_cache[text]

    def project(self, audio):
        """[per example: [(T_i, D_l) tensors per layer]] -> [per example: (T_i, hidden) embeddings]."""
        counts = [a[0].shape[0] for a in audio]
        device = self.mean0.device
        layers = [torch.cat([a[l] for a in audio]).to(device).float() for l in range(self.num_layers)]
        layers = [(x - getattr(self, f"mean{l}")) / getattr(self, f"std{l}") for l, x in enumerate(layers)]
        return list(self.projector(layers).split(counts))

    def _sequences(self, audio, questions, answers=None):
        """Left-padded (embeddings, attention mask, position ids, labels or None) of a batch."""
        embed = self.lm.get_input_embeddings()
        projected = self.project(audio)
        rows, targets = [], []
        for i, (a, q) in enumerate(zip(projected, questions)):
            text = self._ids(q + PROMPT_SUFFIX)
            target = [] if answers is None else self._ids(" " + answers[i]) + [self.end_id]
            ids = torch.tensor(text + target, dtype=torch.long, device=a.device)
            rows.append(torch.cat([a, embed(ids)]))
            targets.append([IGNORE] * (a.shape[0] + len(text)) + target)
        length = max(r.shape[0] for r in rows)
        b, hidden = len(rows), rows[0].shape[1]
        embeds = rows[0].new_zeros(b, length, hidden)
        mask = torch.zeros(b, length, dtype=torch.long, device=embeds.device)
        labels = torch.full((b, length), IGNORE, dtype=torch.long, device=embeds.device)
        for i, r in enumerate(rows):
            n = r.shape[0]
            embeds[i, length - n:] = r
            mask[i, length - n:] = 1
            labels[i, length - n:] = torch.tensor(targets[i], device=embeds.device)
        positions = (mask.cumsum(1) - 1).clamp_min(0)
        return embeds, mask, positions, (labels if answers is not None else None)

    # ---------------------------------------------------------------- training and decoding
    def loss(self, audio, questions, answers):
        """Mean cross-entropy over the answer and end tokens of the batch."""
        embeds, mask, positions, labels = self._sequences(audio, questions, answers)
        # rows are left-padded, so every answer sits in the last `keep - 1` positions: the output
        # head (49k x 576 for SmolLM2, about a fifth of a step's compute) runs on those only
        keep = int((labels != IGNORE).sum(1).max()) + 1
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=keep)
        logits = out.logits[:, :-1].float()
        target = labels[:, -keep + 1:]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                           ignore_index=IGNORE)

    @torch.no_grad()
    def generate(self, audio, questions, max_new_tokens):
        """Greedy answers (decoded text, end token and what follows removed) of a batch."""
        embeds, mask, positions, _ = self._sequences(audio, questions)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                      logits_to_keep=1)
        b = embeds.shape[0]
        tokens = [[] for _ in range(b)]
        done = torch.zeros(b, dtype=torch.bool)
        device = embeds.device
        last = positions[:, -1]
        for _ in range(max_new_tokens):
            nxt = out.logits[:, -1].float().argmax(-1).cpu()
            for i in range(b):
                if not done[i]:
                    if int(nxt[i]) == self.end_id:
                        done[i] = True
                    else:
                        tokens[i].append(int(nxt[i]))
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.long, device=device)], 1)
            last = last + 1
            out = self.lm(input_ids=nxt[:, None].to(device), attention_mask=mask, position_ids=last[:, None],
                          past_key_values=out.past_key_values, use_cache=True)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]

    def layer_weights(self):
        return self.projector.layer_weights()
