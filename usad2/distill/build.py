"""What a distillation run is made of, built from its TrainConfig: the student (a preset, or
--init with optional depth up-scaling), the teachers' layer pairs (stage 1, stage 2 and both),
the prediction heads taken over from --init, and the teacher-family plugins.
"""
import dataclasses
import logging

from usad2.distill.align import parse_teacher_spans
from usad2.distill.task import stage1_spec, stage2_spec
from usad2.distill.weighting import parse_teacher_weights
from usad2.errors import ConfigError, TeacherError
from usad2.models.checkpoint import read_model_file
from usad2.models.heads import head_key
from usad2.models.presets import get_preset
from usad2.models.upscale import layer_map, parse_ranges, upscale
from usad2.models.wave_encoder import Usad2Model
from usad2.teachers.mapping import parse_student_layers
from usad2.teachers.registry import load_card

logger = logging.getLogger("usad2")


def read_init(path):
    """The ModelFile of --init: an export, HF directory or checkpoint (anything with a model config)."""
    return read_model_file(path).require("export", "checkpoint", why="--init needs a model config")


def build_student(cfg):
    """(Usad2Model, the --init ModelFile or None) from --student or --init (+ --upscale_ranges)."""
    overrides = {} if cfg.dropout is None else {"dropout": cfg.dropout,
                                                       "attention_dropout": cfg.dropout}
    if not cfg.init:
        if cfg.upscale_ranges:
            raise ConfigError("--upscale_ranges needs --init (a trained model to up-scale)")
        return Usad2Model(get_preset(cfg.student, **overrides)), None
    init = read_init(cfg.init)
    config, state = init.model_config, init.state_dict
    if cfg.student:
        check_student_matches_init(cfg.student, config, cfg.init, ignore_depth=bool(cfg.upscale_ranges))
    if cfg.upscale_ranges:
        config, state, sources = upscale(config, state, cfg.upscale_ranges)
        logger.info("up-scaled %s to %d layers (source layers %s)", cfg.init, len(sources), sources)
    config = dict(config, **overrides)
    student = Usad2Model(config, init.fbank_config)
    student.load_state_dict(state, strict=True)
    logger.info("initialised the student from %s", cfg.init)
    return student, init


def check_student_matches_init(preset, init_config, where, ignore_depth=False):
    """ConfigError when --student names an architecture other than the --init model's.

    The init's architecture is what trains; a --student beside it is only accepted when it says
    the same (dropout aside, which --dropout overrides; depth aside when up-scaling).
    """
    wanted = dataclasses.asdict(get_preset(preset))
    ignored = {"dropout", "attention_dropout", "activation_dropout", "layerdrop"}
    if ignore_depth:
        ignored.add("num_layers")
    differ = [f"{k} {init_config.get(k)!r} vs {v!r}" for k, v in wanted.items()
              if k not in ignored and init_config.get(k) != v]
    if differ:
        raise ConfigError(f"--student {preset} is not the architecture of --init {where} ({'; '.join(differ)}): "
                          "drop --student (the init's architecture is used) or choose the matching preset")


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
    chosen = parse_student_layers(cfg.student_layers)
    check_outside_names("--student_layers", chosen, stage1, cfg, "this run's stage-1 teachers")
    specs = [stage1_spec(load_card(n, dirs), num_student_layers, cfg.k, chosen.get(n)) for n in stage1]
    for name in stage2:
        spec = stage2_spec(load_card(name, dirs), num_student_layers, cfg.stage2_student_layer)
        same = [s for s in specs if s.name == name]
        if same:  # kept stage-1 teacher that is also a "+" teacher: one spec with both layer sets
            same[0].pairs += [p for p in spec.pairs if p not in same[0].pairs]
            same[0].widths.update(spec.widths)
        else:
            specs.append(spec)
    return with_teacher_options(specs, cfg)


def check_outside_names(option, named, names, cfg, among="this run's teachers"):
    """Warn about each teacher `option` names outside `names` that is a known card (a config shared
    by runs with other teachers); a ConfigError for one that is no card at all (a typo)."""
    listed = ", ".join(names) or "none"
    for name in sorted(set(named) - set(names)):
        try:
            load_card(name, cfg.teacher_cards or None)
        except TeacherError as e:
            raise ConfigError(f"{option} names {name}, not among {among} ({listed}) and no teacher card: {e}") from None
        logger.warning("%s names %s, not among %s (%s): ignored", option, name, among, listed)


def with_teacher_options(specs, cfg, check_cards=True):
    """`specs` with the per-teacher options that change how their targets are fitted applied."""
    return with_sparse_layers(with_spans(specs, cfg, check_cards), cfg, check_cards)


def with_sparse_layers(specs, cfg, check_cards=True):
    """`specs` with --sparse_layers set on the teachers it names (usad2.distill.task).

    A named layer this run does not distil is ignored with a warning (a config shared by stage 1
    and stage 2); a teacher outside the run is treated as --teacher_spans treats it.
    """
    chosen = parse_student_layers(cfg.sparse_layers, "--sparse_layers")
    if check_cards:
        check_outside_names("--sparse_layers", chosen, [s.name for s in specs], cfg)
    for spec in specs:
        layers = chosen.get(spec.name, [])
        unused = [t for t in layers if t not in spec.teacher_layers]
        if unused:
            logger.warning("--sparse_layers: %s layers %s are not distilled in this run (%s): ignored", spec.name,
                           unused, spec.teacher_layers)
        spec.sparse_layers = tuple(t for t in layers if t in spec.teacher_layers)
        if spec.sparse_layers:
            logger.info("%s: layers %s fitted as sparse (one std per layer, squared error)", spec.name,
                        list(spec.sparse_layers))
    return specs


def with_spans(specs, cfg, check_cards=True):
    """`specs` with --teacher_spans set on the teachers it names (usad2.distill.align).

    A name outside this run that is a known card is ignored with a warning (a config shared by
    runs with other teachers); one that is no card stops the run.
    """
    spans = parse_teacher_spans(cfg.teacher_spans)
    if check_cards:
        check_outside_names("--teacher_spans", spans, [s.name for s in specs], cfg)
    for spec in specs:
        spec.span = spans.get(spec.name)
        if spec.span is not None:
            logger.info("%s: the student's predictions are averaged over each teacher frame's %g s", spec.name,
                        spec.span)
    return specs


def loss_scales(cfg, specs, check_cards=True):
    """--teacher_weights as one loss multiplier per spec (1 for teachers it does not name).

    A name outside this run that is a known card (a config shared by stage 1 and stage 2) is
    ignored with a warning, as --student_layers does; one that is no card stops the run.
    `check_cards` False (re-reading a finished run) skips the card lookup.
    """
    scales = parse_teacher_weights(cfg.teacher_weights)
    names = [s.name for s in specs]
    if check_cards:
        check_outside_names("--teacher_weights", scales, [s.name for s in specs], cfg)
    values = [scales.get(n, 1.0) for n in names]
    if scales:
        logger.info("teacher loss scales: %s", ", ".join(f"{n} x{v:g}" for n, v in zip(names, values)))
    return values


def heads_hidden(heads_state):
    """The hidden width of saved prediction heads: 0 for linear heads, None when there are none."""
    if not heads_state:
        return None
    if not any(k.endswith(".2.weight") for k in heads_state):
        return 0
    return int(next(v.shape[0] for k, v in heads_state.items() if k.endswith(".0.weight")))


def load_init_heads(model, init, cfg, specs=()):
    """Copy heads of the init checkpoint (a ModelFile) whose key and shape match (unless dropped);
    `specs` (the run's TeacherSpecs) name the heads that fit probabilities."""
    if init is None or not init.heads or (cfg.stage2_teachers and cfg.drop_stage1):
        return []
    own = model.heads.state_dict()
    taken = {k: v for k, v in init.heads.items() if k in own and own[k].shape == v.shape}
    own.update(taken)
    model.heads.load_state_dict(own)
    keys = sorted({k.split(".")[0] for k in taken})
    logger.info("heads taken from the init checkpoint: %s", ", ".join(keys) or "none")
    probability_keys = {head_key(s.name, t) for s in specs for t in s.teacher_layers if t in s.probability_layers}
    sources = upscaled_sources(cfg, init.model_config["num_layers"])
    for problem in kept_head_changes(init.raw, keys, model.head_inputs, probability_keys, cfg, sources):
        logger.warning("%s: %s", cfg.init, problem)
    return keys


def upscaled_sources(cfg, init_layers):
    """{new layer: the --init layer it copies} under --upscale_ranges (1-based), else None."""
    if not cfg.upscale_ranges:
        return None
    return dict(enumerate(layer_map(parse_ranges(cfg.upscale_ranges), int(init_layers)), start=1))


def kept_head_changes(init_ckpt, keys, head_inputs, probability_keys, cfg, sources=None):
    """What makes heads taken from --init predict something else now: another student layer, or
    another form of the probability targets (e.g. a stage 2 run without its stage 1's
    --probability_targets). A continuation should repeat the options of the run it continues.

    `sources` ({new layer: init layer}, after depth up-scaling) counts a head that reads a copy of
    its old layer as unmoved.
    """
    problems = []
    recorded = dict(init_ckpt.get("head_inputs") or {})
    sources = sources or {}
    moved = [f"{k} (layer {recorded[k]} -> {head_inputs[k]}{_copy_of(sources, head_inputs[k])})" for k in keys
             if k in recorded and k in head_inputs and recorded[k] != sources.get(head_inputs[k], head_inputs[k])]
    if moved:
        problems.append("heads now read other student layers: " + ", ".join(moved) + " (see --student_layers)")
    saved = (init_ckpt.get("config") or {}).get("probability_targets", "raw")
    probability_heads = [k for k in keys if k in probability_keys]
    if saved != cfg.probability_targets and probability_heads:
        problems.append(f"it fitted probability targets with --probability_targets {saved}, this run with "
                        f"{cfg.probability_targets}: the kept heads {', '.join(probability_heads)} change units")
    before = _sparse_keys((init_ckpt.get("config") or {}).get("sparse_layers"))
    changed = [k for k in keys if k in before ^ _sparse_keys(cfg.sparse_layers)]
    if changed:
        problems.append(f"--sparse_layers names the kept heads {', '.join(changed)} in one of the two runs only: "
                        "they change units")
    return problems


def _copy_of(sources, layer):
    """", a copy of layer N" for an up-scaled layer, else ""."""
    return f", a copy of layer {sources[layer]}" if layer in sources else ""


def _sparse_keys(text):
    """Head keys of a --sparse_layers value."""
    return {head_key(name, t) for name, layers in parse_student_layers(text, "--sparse_layers").items()
            for t in layers}


def import_plugins(names):
    """Import modules that register extra Teacher families (`register_family`)."""
    import importlib

    for name in names or []:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"--plugins: cannot import {name}: {e}") from None
