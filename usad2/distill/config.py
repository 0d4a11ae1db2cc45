"""`TrainConfig`: every option of `python -m usad2.bin.distill`, typed, with its default written once.

The command line (`usad2.bin.distill.build_parser` makes one option per field), `--config` YAML
files (keys are field names), the trainer and the "config" entry of every training checkpoint
(`to_dict()`, plain values) are all views of this one dataclass. A value that the command line or
a YAML file cannot be (an unknown choice, K < 1, a missing --train_dir) is a ConfigError here,
before anything runs.

Adding an option: add a field with `_option(default, help, ...)` in the group where it belongs
(`identity=True` when changing it makes an existing experiment dir a different experiment, so a
resume with another value is refused), and a check in `__post_init__` if some values are
invalid. The option then exists on the command line, in YAML configs and in checkpoints; older
checkpoints, which lack the field, read back with its default (`from_saved`).

Options renamed when distill got one name per option (`RENAMED`): the old spelling on the command
line or in a YAML file is an error naming the new one; checkpoints written before the rename keep
loading (`from_saved` renames their keys).
"""
import dataclasses
import logging
from typing import Optional

from usad2.distill.align import format_teacher_spans, parse_teacher_spans
from usad2.distill.weighting import format_teacher_weights, parse_teacher_weights
from usad2.errors import ConfigError
from usad2.models.presets import PRESETS
from usad2.teachers.mapping import format_student_layers, parse_student_layers
from usad2.utils.cli import str2bool
from usad2.utils.precision import PRECISIONS

logger = logging.getLogger("usad2")
# old spelling -> the one name kept (the recipe's)
RENAMED = {"train_data": "train_dir", "dev_data": "dev_dir", "preset": "student", "out": "out_dir"}


def names(text):
    """Comma-separated names -> list (empty strings dropped)."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _option(default, help, parse=None, choices=None, identity=False):
    """A field with its command-line metadata; `parse` turns the command line's string into the value."""
    if parse is None:
        parse = {list: names, bool: str2bool}.get(type(default), type(default) if default is not None else str)
    meta = {"help": help, "parse": parse, "choices": choices, "identity": identity}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class TrainConfig:
    """One distillation run (stage 1, stage 2 "+", continuation); see the module docstring."""

    # data and teachers
    train_dir: Optional[str] = _option(None, "training data dir (with utt2domain, optional utt2weight); required",
                                       identity=True)
    dev_dir: Optional[str] = _option(None, "dev data dir (dev loss, best checkpoint); none: no dev loss")
    teachers: list = _option([], "stage-1 teachers (card names, comma-separated), K-sparse mapping", identity=True)
    targets_dir: Optional[str] = _option(None, "offline targets root (<dir>/<teacher>/<set>)", identity=True)
    teacher_mode: str = _option("auto", "online: teachers run in the step; offline: read --targets_dir; auto: "
                                "offline iff --targets_dir", choices=("auto", "online", "offline"))
    teacher_cards: Optional[str] = _option(None, "directory of user teacher cards (overrides the package's)")
    plugins: list = _option([], "Python modules to import first (they register teacher families)")
    # student
    student: Optional[str] = _option(
        None, "student preset (default tiny): " + ", ".join(n for n in PRESETS if not n.endswith("_f1"))
        + " (NAME_f1: the same with frequency stride 1); with --init the architecture is the init's, and a "
        "--student naming another one is an error", identity=True)
    dropout: Optional[float] = _option(None, "override the preset's dropout (and attention dropout)", parse=float)
    out_dir: Optional[str] = _option(None, "experiment directory exp/<tag>; required")
    # task
    k: int = _option(4, "number of sparse layer pairs per teacher", identity=True)
    student_layers: Optional[str] = _option(
        None, "per teacher, the student layers that predict its K layers instead of floor(k*L_S/K), e.g. "
        "'basic_pitch=1,2,3' (';' between teachers)", identity=True)
    omega: float = _option(10.0, "domain weight ω (1 = USAD v1 uniform weights)")
    any_weight: float = _option(1.0, "weight of teachers of domain 'any'")
    teacher_weights: Optional[str] = _option(
        None, "per teacher, a multiplier of its loss weight on every utterance, after the domain rule, e.g. "
        "'speech_embedding=2,resemblyzer=0.5' (default 1; 0 = keep its heads, no loss)", identity=True)
    domain_source: str = _option("labels", "each utterance's domain: labels (utt2domain), infer (the posteriors of "
                                 "utt2domain_post from usad2.bin.infer_domains: soft weights) or mixed (labels "
                                 "where known, posteriors elsewhere)", choices=("labels", "infer", "mixed"),
                                 identity=True)
    teacher_spans: Optional[str] = _option(
        None, "per teacher whose frames average a window of audio longer than their hop, the window in seconds, "
        "e.g. 'yamnet=0.975': the student's predictions are averaged over each window instead of pooled to the "
        "teacher's hop (usad2.distill.align; default none = the paper's alignment)", identity=True)
    tolerance: int = _option(2, "frame-length mismatch tolerated after alignment (student frames)")
    # optimisation
    max_steps: int = _option(1000, "optimizer steps")
    warmup_steps: int = _option(100, "linear warm-up steps")
    schedule: str = _option("linear", "decay after warm-up", choices=("linear", "cosine"))
    min_lr_ratio: float = _option(0.0, "final LR as a fraction of the peak")
    lr: float = _option(8e-4, "peak learning rate (paper: 8e-4 small .. 1.5e-3 large)")
    weight_decay: float = _option(0.01, "AdamW weight decay (matrices only)")
    head_lr_scale: float = _option(1.0, "learning rate of the prediction heads as a multiple of --lr (1 = the "
                                   "paper: one rate)")
    batch_seconds: float = _option(80.0, "seconds of audio per global batch (all ranks)", identity=True)
    crop_seconds: float = _option(10.0, "random crop length", identity=True)
    use_weights: bool = _option(True, "sample by utt2weight (domain upsampling)")
    dev_batch_seconds: float = _option(80.0, "seconds of audio per dev batch")
    dev_max_seconds: Optional[float] = _option(None, "centre-crop longer dev utterances to this", parse=float)
    grad_accum: int = _option(1, "micro-batches per optimizer step", identity=True)
    clip_grad: float = _option(5.0, "gradient norm clipping (0 = off)")
    ema_decay: float = _option(0.0, "exponential moving average of the student's and heads' weights with this decay "
                               "(e.g. 0.999; 0 = off, the paper): the dev loss, best.pt, export and a stage-2 --init "
                               "then use the averaged weights (usad2.distill.ema)", identity=True)
    # checkpoints and logs
    save_every: int = _option(500, "checkpoint every N steps (and at the end)")
    keep_last: int = _option(3, "step checkpoints kept (best.pt and last.pt always)")
    dev_every: int = _option(500, "dev loss every N steps (and at the end)")
    log_every: int = _option(10, "text-log every N steps (metrics.jsonl gets every step)")
    seed: int = _option(0, "random seed", identity=True)
    precision: str = _option("auto", "bf16 = autocast of the student and heads (weights, optimizer, fbank, loss stay "
                             "fp32); auto = bf16 on a CUDA device or a CPU with bf16 matrix instructions "
                             "(avx512_bf16 / amx_bf16), else fp32", choices=tuple(PRECISIONS))
    fsdp: bool = _option(False, "shard the student with FSDP instead of DDP", identity=True)
    # targets
    target_norm: str = _option("standardize", "per-dimension target standardisation (default chosen by "
                               "measurement: usad2.distill.task)", choices=("none", "standardize"), identity=True)
    probability_targets: str = _option(
        "raw", "teacher layers that are probabilities (card: probability_layers): raw = as the teacher gives them, "
        "standardised, frame loss; logit = their log-odds, standardised, frame loss; bce = heads predict logits, "
        "fitted by the Bernoulli KL to the posteriors (usad2.distill.loss); mse = posteriors centred and scaled by "
        "one std per layer, squared error instead of L1 in the frame loss",
        choices=("logit", "raw", "bce", "mse"), identity=True)
    sparse_layers: Optional[str] = _option(
        None, "per teacher, layers whose dimensions are mostly inactive, fitted as --probability_targets mse fits "
        "posteriors (centred, one std per layer, squared error instead of L1), e.g. 'yamnet=6' (YAMNet's "
        "embedding, four fifths zeros); ';' between teachers; default none = every layer standardised per dimension",
        identity=True)
    norm_batches: int = _option(20, "training batches used for the target statistics")
    # initialisation, stage 2, up-scaling
    init: Optional[str] = _option(None, "stage-1 training checkpoint, export, or experiment dir (its best.pt, else "
                                  "last.pt) to start from", identity=True)
    drop_stage1: bool = _option(True, "with --stage2_teachers: drop the stage-1 teachers and heads")
    stage2_teachers: list = _option([], "teachers whose LAST layer is distilled (stage 2)", identity=True)
    stage2_student_layer: int = _option(-1, "student layer predicting them (-1 = last)", identity=True)
    upscale_ranges: Optional[str] = _option(None, "depth up-scaling of the --init model, e.g. 1-24,9-32",
                                            identity=True)
    head_hidden: Optional[int] = _option(None, "hidden width of the heads (default d_model; 0 = linear heads, "
                                         "one Linear per teacher layer)", parse=int)
    # process
    num_workers: int = _option(1, "audio decoding threads of the data pipeline")
    device: str = _option("auto", "auto, cpu, cuda or cuda:N")
    threads: int = _option(1, "torch intra-op threads per process")

    def __post_init__(self):
        for name in ("train_dir", "out_dir"):
            if not getattr(self, name):
                raise ConfigError(f"--{name} is required (on the command line or in --config)")
        for f in dataclasses.fields(self):
            choices = f.metadata["choices"]
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"--{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
        for name in ("k", "grad_accum", "save_every", "dev_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("omega", "batch_seconds", "crop_seconds", "dev_batch_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name} must be positive, got {getattr(self, name)}")
        # a malformed map fails here, before anything runs; spellings of one map (spaces, order, a YAML
        # dict) become one string, so a resume compares meanings
        self.student_layers = format_student_layers(parse_student_layers(self.student_layers))
        self.sparse_layers = format_student_layers(parse_student_layers(self.sparse_layers, "--sparse_layers"))
        self.teacher_weights = format_teacher_weights(parse_teacher_weights(self.teacher_weights))
        self.teacher_spans = format_teacher_spans(parse_teacher_spans(self.teacher_spans))
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ema_decay and self.fsdp:
            raise ConfigError("--ema_decay is not supported with --fsdp (the average would need the full, unsharded "
                              "weights every step); use DDP (--fsdp false)")
        if self.student is None and not self.init:
            self.student = "tiny"
        if self.teacher_mode == "online":
            self.targets_dir = None
        elif self.teacher_mode == "offline" and not self.targets_dir:
            raise ConfigError("--teacher_mode offline needs --targets_dir")

    def to_dict(self):
        """Plain values (what a checkpoint's "config" holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_saved(cls, saved, where="checkpoint"):
        """The TrainConfig of a checkpoint's "config" dict, also one written before a field existed
        (it gets the default) or before the options were renamed (old keys are renamed)."""
        if not isinstance(saved, dict):
            raise ConfigError(f"{where}: its config is not a dict ({type(saved).__name__})")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {RENAMED.get(k, k): v for k, v in saved.items()}
        unknown = sorted(set(values) - known)
        if unknown:
            logger.debug("%s: ignoring config keys this usad2 does not have: %s", where, ", ".join(unknown))
        return cls(**{k: v for k, v in values.items() if k in known})

    def identity_changes(self, saved):
        """[(field, saved value, this value)] of the identity fields where `saved` (a TrainConfig) differs."""
        # with --init on both sides the architecture is the init's (itself compared): --student is not
        # (runs before this rule recorded the default "tiny" there whatever the init was)
        skip = {"student"} if self.init and saved.init else set()
        return [(f.name, getattr(saved, f.name), getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata["identity"] and f.name not in skip and getattr(saved, f.name) != getattr(self, f.name)]
