"""What a distillation run is made of, built from its TrainConfig: the student (a preset, or
--init with optional depth up-scaling), the teachers' layer pairs (stage 1, stage 2 and both),
the prediction heads taken over from --init, and the teacher-family plugins.
"""
import logging

from usad2.distill.task import stage1_spec, stage2_spec
from usad2.errors import ConfigError
from usad2.models.checkpoint import read_model_file
from usad2.models.presets import get_preset
from usad2.models.upscale import upscale
from usad2.models.wave_encoder import Usad2Model
from usad2.teachers.registry import load_card

logger = logging.getLogger("usad2")


def read_init(path):
    """(model config dict, fbank config dict or None, encoder state dict, heads state or None)."""
    found = read_model_file(path).require("export", "checkpoint", why="--init needs a model config")
    return found.model_config, found.fbank_config, found.state_dict, found.heads


def build_student(cfg):
    """(Usad2Model, init heads state or None) from --preset or --init (+ --upscale_ranges)."""
    overrides = {} if cfg.dropout is None else {"dropout": cfg.dropout,
                                                       "attention_dropout": cfg.dropout}
    if not cfg.init:
        if cfg.upscale_ranges:
            raise ConfigError("--upscale_ranges needs --init (a trained model to up-scale)")
        return Usad2Model(get_preset(cfg.student, **overrides)), None
    config, fbank, state, heads = read_init(cfg.init)
    if cfg.upscale_ranges:
        config, state, sources = upscale(config, state, cfg.upscale_ranges)
        logger.info("up-scaled %s to %d layers (source layers %s)", cfg.init, len(sources), sources)
    config = dict(config, **overrides)
    student = Usad2Model(config, fbank)
    student.load_state_dict(state, strict=True)
    logger.info("initialised the student from %s", cfg.init)
    return student, heads


def teacher_specs(cfg, num_student_layers):
    """TeacherSpecs of the stage-1 (K-sparse) and stage-2 (last layer) teachers."""
    dirs = cfg.teacher_cards or None
    stage2 = [t for t in cfg.stage2_teachers or [] if t]
    stage1 = [t for t in cfg.teachers or [] if t]
    if stage2 and cfg.drop_stage1:
        if stage1:
            logger.info("stage 2 with --drop_stage1 true: not distilling from %s", ", ".join(stage1))
        stage1 = []
    for names in (stage1, stage2):
        if len(set(names)) != len(names):
            raise ConfigError(f"a teacher is listed twice: {names}")
    specs = [stage1_spec(load_card(n, dirs), num_student_layers, cfg.k) for n in stage1]
    for name in stage2:
        spec = stage2_spec(load_card(name, dirs), num_student_layers, cfg.stage2_student_layer)
        same = [s for s in specs if s.name == name]
        if same:  # kept stage-1 teacher that is also a "+" teacher: one spec with both layer sets
            same[0].pairs += [p for p in spec.pairs if p not in same[0].pairs]
            same[0].widths.update(spec.widths)
        else:
            specs.append(spec)
    return specs


def heads_hidden(heads_state):
    """The hidden width of saved prediction heads: 0 for linear heads, None when there are none."""
    if not heads_state:
        return None
    if not any(k.endswith(".2.weight") for k in heads_state):
        return 0
    return int(next(v.shape[0] for k, v in heads_state.items() if k.endswith(".0.weight")))


def load_init_heads(model, heads_state, cfg):
    """Copy heads of the init checkpoint whose key and shape match (unless dropped)."""
    if not heads_state or (cfg.stage2_teachers and cfg.drop_stage1):
        return []
    own = model.heads.state_dict()
    taken = {k: v for k, v in heads_state.items() if k in own and own[k].shape == v.shape}
    own.update(taken)
    model.heads.load_state_dict(own)
    keys = sorted({k.split(".")[0] for k in taken})
    logger.info("heads taken from the init checkpoint: %s", ", ".join(keys) or "none")
    return keys


def import_plugins(names):
    """Import modules that register extra Teacher families (`register_family`)."""
    import importlib

    for name in names or []:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--plugins: cannot import {name}: {e}") from None
