"""Distillation training-step throughput: usad2 students vs s3prl's DistilHuBERT.

Both sides run the same step: forward on raw 16 kHz waves (each model's own front end
included), three prediction heads against precomputed 768-d targets at the model's frame rate
(teacher cost excluded), loss L1 + (-log sigmoid cos) on valid frames, backward, AdamW step.

- DistilHuBERT: `s3prl.upstream.distiller.model.DistillerModel` built from its published
  pretraining config (2 layers x 768, 12 heads, FFN 3072, 7-layer CNN feature extractor on the
  raw wave with feature_grad_mult 0.1, expand-last output layer predicting HuBERT layers
  4/8/12), randomly initialised (no checkpoint needed to time it).
- usad2 at the same width/depth: preset small with d_model 768, 2 layers, 12 heads, 50 Hz,
  three heads (`usad2.models.heads`) all on the last layer, as DistilHuBERT does.
- usad2 `small` (12 x 384, heads on layers 4/8/12) and `mini` (the demo student) are reported too.
Precision: the usad2 students run at distill's default (`auto`: bf16 autocast on a CPU with bf16
matrix instructions, usad2.utils.precision); DistilHuBERT runs both at its own default (fp32) and
under the same autocast, and the target compares with the faster of the two. The loss stays fp32.
Throughput = seconds of audio in the batch / median step time.
"""
import contextlib
import io

import torch
import torch.nn.functional as F

from bench.common import Result, interleaved
from usad2.distill.loss import cosine
from usad2.utils.precision import autocast, resolve_precision

SR = 16000
TEACHER_DIM = 768
MINI_RECIPE_BATCH = (8, 4.0)  # utterances x seconds of the demo recipe's stage-1 batch
MINI_RECIPE_REPEATS = {False: 15, True: 4}  # interleaved steps of that batch per precision (full, quick)

# s3prl's published DistilHuBERT model config (pretrain/distiller/config_model.yaml)
DISTILHUBERT_CONFIG = {
    "extractor_mode": "default",
    "extractor_conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "extractor_dropout": 0.0, "feature_grad_mult": 0.1,
    "conv_pos": 128, "conv_pos_groups": 16,
    "encoder_layers": 2, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12, "activation_fn": "gelu", "layer_norm_first": False,
    "attention_type": "original", "dropout": 0.1, "attention_dropout": 0.1,
    "activation_dropout": 0.1, "encoder_layerdrop": 0.0,
    "final_dim": 768, "out_layer_type": "expand-last", "n_tasks": 3,
    "task_emb_type": "expand-last", "pred_layer_id": [4, 8, 12],
    "loss_type": "l1", "feat_pen_loss": 0.0, "cosine_loss": 1.0,
}


def distill_loss(pred, target, mask):
    """L1 + (-log sigmoid cos) per frame, averaged over valid frames (both sides use this, with the
    cosine of usad2's trainer: the loss is the same fp32 work for both, not what is compared)."""
    per_frame = (pred - target).abs().mean(-1) - F.logsigmoid(cosine(pred, target))
    return (per_frame * mask).sum() / mask.sum()


class DistilHubertStep:
    """One DistilHuBERT training step on (B, N) waves with random 3-layer targets."""

    def __init__(self, batch, seconds, seed=0, precision="fp32"):
        from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

        torch.manual_seed(seed)
        with contextlib.redirect_stdout(io.StringIO()):  # the model prints its config
            self.model = DistillerModel(DistillerConfig(DISTILHUBERT_CONFIG))
        self.model.train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=2e-4)
        self.wave = torch.randn(batch, int(seconds * SR)) * 0.1
        self.pad = torch.ones_like(self.wave, dtype=torch.long)
        with torch.no_grad():
            _, _, pred, pad_mask = self.model(self.wave, self.pad)
        self.targets = torch.randn_like(pred)  # (B, 3, T, 768)
        self.mask = pad_mask.float().unsqueeze(1).expand(-1, 3, -1)
        self.audio_seconds = batch * seconds
        self.precision = precision

    def __call__(self):
        with autocast(self.precision):
            _, _, pred, _ = self.model(self.wave, self.pad)
        loss = distill_loss(pred.float(), self.targets, self.mask)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss

    def num_parameters(self):
        return sum(p.numel() for p in self.model.parameters())


class Usad2Step:
    """One usad2 distillation step: Usad2Model (fbank + encoder) + build_heads, random targets."""

    def __init__(self, config, batch, seconds, num_heads=3, seed=0, precision="fp32"):
        from usad2.teachers.mapping import student_layers
        from usad2.models.heads import build_heads
        from usad2.models.wave_encoder import Usad2Model

        torch.manual_seed(seed)
        self.model = Usad2Model(config).train()
        # K-sparse layers; a student shallower than K predicts all from its last layer (DistilHuBERT)
        self.layers = (student_layers(config.num_layers, num_heads) if num_heads <= config.num_layers
                       else [config.num_layers] * num_heads)
        spec = {("teacher", k): TEACHER_DIM for k in range(1, num_heads + 1)}
        self.heads = build_heads(spec, config.d_model).train()
        params = list(self.model.parameters()) + list(self.heads.parameters())
        self.opt = torch.optim.AdamW(params, lr=8e-4)
        self.wave = torch.randn(batch, int(seconds * SR)) * 0.1
        self.lengths = torch.full((batch,), self.wave.shape[1])
        with torch.no_grad():
            out = self.model(self.wave, self.lengths)
        t = out.hidden_states[0].shape[1]
        self.targets = [torch.randn(batch, t, TEACHER_DIM) for _ in range(num_heads)]
        self.mask = (torch.arange(t).unsqueeze(0) < out.lengths.unsqueeze(1)).float()
        self.audio_seconds = batch * seconds
        self.precision = precision

    def __call__(self):
        with autocast(self.precision):
            out = self.model(self.wave, self.lengths)
            preds = [head(out.hidden_states[layer]) for head, layer in zip(self.heads.values(), self.layers)]
        loss = 0.0
        for pred, target in zip(preds, self.targets):
            loss = loss + distill_loss(pred.float(), target, self.mask)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return loss

    def num_parameters(self):
        return sum(p.numel() for p in self.model.parameters()) + sum(p.numel() for p in self.heads.parameters())


def same_shape_config():
    """usad2 at DistilHuBERT's width/depth: 2 layers x 768, 12 heads, 50 Hz."""
    from usad2.models.presets import get_preset

    return get_preset("small", d_model=768, num_layers=2, num_heads=12)


def run(quick=False):
    from usad2.models.presets import get_preset

    batch, seconds, repeats = (2, 4.0, 2) if quick else (4, 10.0, 3)
    precision = resolve_precision("auto")  # what distill runs at by default on this machine
    steps = {"distilhubert_fp32": DistilHubertStep(batch, seconds),
             "distilhubert_bf16": DistilHubertStep(batch, seconds, precision="bf16"),
             "usad2_2x768": Usad2Step(same_shape_config(), batch, seconds, precision=precision),
             "usad2_2x768_fp32": Usad2Step(same_shape_config(), batch, seconds),
             "usad2_small": Usad2Step(get_preset("small"), batch, seconds, precision=precision),
             "mini": Usad2Step(get_preset("mini"), batch, seconds, precision=precision),
             "mini_fp32": Usad2Step(get_preset("mini"), batch, seconds)}
    times = interleaved(steps, repeats)
    # the demo recipe's own batch (conf/distill_default.yaml: 32 s of 4 s crops). Its steps take
    # 0.4-0.7 s and a median of three was not stable from run to run (bench/README.md), so they
    # get their own, longer interleaving
    recipe = {"mini_recipe": Usad2Step(get_preset("mini"), *MINI_RECIPE_BATCH, precision=precision),
              "mini_recipe_fp32": Usad2Step(get_preset("mini"), *MINI_RECIPE_BATCH)}
    times.update(interleaved(recipe, MINI_RECIPE_REPEATS[quick]))
    steps.update(recipe)
    speed = {k: steps[k].audio_seconds / t for k, t in times.items()}
    shape = f"batch {batch} x {seconds:g} s, 1 thread"
    params = {k: steps[k].num_parameters() / 1e6 for k in steps}
    best_dh = max(("distilhubert_fp32", "distilhubert_bf16"), key=speed.get)
    return [
        Result(f"train_step usad2_2x768/distilhubert ({precision})", speed["usad2_2x768"] / speed[best_dh], 3.0,
               note=f"{speed['usad2_2x768']:.1f} vs {speed[best_dh]:.1f} audio s/s, DistilHuBERT at its best "
                    f"precision ({best_dh.split('_')[1]}; fp32 {speed['distilhubert_fp32']:.1f}, bf16 autocast "
                    f"{speed['distilhubert_bf16']:.1f}) ({params['usad2_2x768']:.1f}M vs "
                    f"{params['distilhubert_fp32']:.1f}M params; {shape})"),
        Result("train_step usad2_2x768/distilhubert fp32", speed["usad2_2x768_fp32"] / speed["distilhubert_fp32"],
               note=f"{speed['usad2_2x768_fp32']:.1f} vs {speed['distilhubert_fp32']:.1f} audio s/s, both fp32"),
        Result(f"train_step mini {precision}/fp32", speed["mini_recipe"] / speed["mini_recipe_fp32"],
               1.6 if precision == "bf16" else None,
               note=f"{speed['mini_recipe']:.1f} vs {speed['mini_recipe_fp32']:.1f} audio s/s, "
                    f"{params['mini']:.1f}M params (the recipe's batch {MINI_RECIPE_BATCH[0]} x "
                    f"{MINI_RECIPE_BATCH[1]:g} s, 1 thread)"),
        Result(f"train_step mini {precision}/fp32 {seconds:g}s crops", speed["mini"] / speed["mini_fp32"],
               note=f"{speed['mini']:.1f} vs {speed['mini_fp32']:.1f} audio s/s ({shape})"),
        Result(f"train_step usad2_small/distilhubert ({precision})", speed["usad2_small"] / speed[best_dh],
               note=f"{speed['usad2_small']:.1f} audio s/s, {params['usad2_small']:.1f}M params ({shape})"),
    ]
