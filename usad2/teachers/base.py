"""The teacher interface every family implements, and the teacher card that describes one.

A teacher is a frozen expert encoder. It takes the 16 kHz mono float batch of the data
contract, does its own resampling and front end, and returns chosen layers as (B, T, D)
tensors with per-utterance frame counts. Layers are numbered 1..num_layers (0, where a
family has it, is the input embedding). Frame t of a teacher is centred at
`frame_offset + t / frame_rate` seconds; rates are exact fractions (22050/256 Hz, not 86).
"""
import abc
import dataclasses
import fractions
import os

from usad2.errors import TeacherError
from usad2.utils.dataclass_dict import check_known_keys

DOMAINS = ("speech", "audio", "music", "any")
FAMILIES = {}


def cache_dir():
    """Where fetched teacher files live: $USAD2_CACHE, default ~/.cache/usad2."""
    return os.environ.get("USAD2_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "usad2")


def parse_rate(value):
    """An exact frame rate from 50, 12.5, '22050/256' or a Fraction."""
    try:
        return fractions.Fraction(str(value)) if not isinstance(value, fractions.Fraction) else value
    except (ValueError, ZeroDivisionError) as e:
        raise TeacherError(f"bad frame rate {value!r}: {e}") from None


@dataclasses.dataclass
class TeacherCard:
    """What a teacher card (YAML) declares; fields in docs/formats.md#2-teacher-cards.

    name/family/domain: identity; source: where the checkpoint is (path or cached file names,
    sha256); sample_rate: native input rate; frame_rate: exact Fraction; frame_offset: seconds
    of frame 0's centre; num_layers and width (int, or one int per layer in `widths`);
    distill_layers: explicit layers to distil (else the K-sparse rule); layer_names: optional
    names of layers 1..L (e.g. contour/note/onset); layer_tensor: "block" or "ffn";
    probability_layers: layers whose values are probabilities in [0, 1] (sigmoid posteriors such as
    basic-pitch's), which distillation may re-express as log-odds (usad2.distill.target_sources);
    options: family-specific settings.
    """
    name: str
    family: str
    domain: str
    sample_rate: int
    frame_rate: fractions.Fraction
    num_layers: int
    width: int
    frame_offset: float = 0.0
    widths: list = None
    distill_layers: list = None
    layer_names: list = None
    layer_tensor: str = "block"
    probability_layers: list = None
    source: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self):
        self.frame_rate = parse_rate(self.frame_rate)
        if self.domain not in DOMAINS:
            raise TeacherError(f"teacher card {self.name}: domain {self.domain!r} is not one of {DOMAINS}")
        if self.layer_tensor not in ("block", "ffn"):
            raise TeacherError(f"teacher card {self.name}: layer_tensor must be block or ffn")
        if self.widths is not None and len(self.widths) != self.num_layers:
            raise TeacherError(f"teacher card {self.name}: {len(self.widths)} widths for {self.num_layers} layers")
        bad = [k for k in self.probability_layers or [] if not (isinstance(k, int) and 1 <= k <= self.num_layers)]
        if bad:
            raise TeacherError(f"teacher card {self.name}: probability_layers {bad} are not layers "
                               f"1..{self.num_layers}")

    def layer_width(self, layer):
        """Width of layer `layer` (1-based)."""
        return self.widths[layer - 1] if self.widths else self.width

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["frame_rate"] = str(self.frame_rate)
        if d["probability_layers"] is None:  # a later field: absent when unset, so the
            del d["probability_layers"]      # fingerprints of existing targets stay valid
        return d

    @classmethod
    def from_dict(cls, d, origin="<dict>"):
        check_known_keys(cls, d, f"teacher card {origin}", TeacherError)
        missing = sorted(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                         and f.name not in d)
        if missing:
            raise TeacherError(f"teacher card {origin}: missing keys {missing}")
        return cls(**d)


class Teacher(abc.ABC):
    """A frozen expert. Subclasses implement `_extract`; `extract` adds the contract checks."""

    # True for families whose compute is torch modules (a bf16 autocast region speeds them up);
    # the demo teachers run onnxruntime / numpy code, which autocast does not reach
    torch_compute = False

    def __init__(self, card):
        self.card = card

    name = property(lambda self: self.card.name)
    domain = property(lambda self: self.card.domain)
    sample_rate = property(lambda self: self.card.sample_rate)
    frame_rate = property(lambda self: self.card.frame_rate)
    frame_offset = property(lambda self: self.card.frame_offset)
    num_layers = property(lambda self: self.card.num_layers)

    def width(self, layer):
        return self.card.layer_width(layer)

    def frame_times(self, num_frames):
        """Centre time in seconds of frames 0..num_frames-1."""
        return [float(self.frame_offset + fractions.Fraction(t) / self.frame_rate) for t in range(num_frames)]

    def to(self, device):
        """Move the teacher's modules to `device`; families with torch modules override."""
        return self

    def extract(self, wavs, lengths, layers, precision="fp32"):
        """wavs: (B, N) float 16 kHz zero-padded; lengths: (B,) samples; layers: 1-based ids.

        Returns (list of (B, T, D_layer) float32 tensors in the order of `layers`, frame
        lengths (B,) long). Frozen, no grad, deterministic. precision "bf16" runs a torch family
        under bf16 autocast (outputs still float32); other families ignore it.
        """
        import torch

        from usad2.utils.precision import autocast

        for layer in layers:
            if not 1 <= layer <= self.num_layers:
                raise TeacherError(f"teacher {self.name}: layer {layer} outside 1..{self.num_layers}")
        region = autocast(precision if self.torch_compute else "fp32", torch.as_tensor(wavs).device)
        with torch.inference_mode(), region:
            outputs, frame_lengths = self._extract(wavs, torch.as_tensor(lengths, dtype=torch.long), list(layers))
        return [o.float() for o in outputs], frame_lengths.long()

    @abc.abstractmethod
    def _extract(self, wavs, lengths, layers):
        """Family-specific extraction; same contract as `extract`."""


def register_family(name):
    """Class decorator: make a Teacher subclass buildable from cards with `family: name`.

    The class must accept `(card, cache=None, device="cpu")`.
    """
    def wrap(cls):
        FAMILIES[name] = cls
        return cls
    return wrap
