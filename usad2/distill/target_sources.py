"""Where distillation targets come from: teachers run inside the step, or offline ark files.

(Named target_sources, not targets: `usad2.targets` is the package that extracts and stores the
offline ark files this module reads.)

Both providers answer `get(batch, device) -> {teacher name: (list of (B, T, D) float32 tensors in
the order of that teacher's layers, frame lengths (B,) long)}` for a `Batch` of the training or
dev pipeline (fields `utts`, `wavs` (B, N), `lengths`, `crop_starts`, `full_lengths`; samples at
16 kHz).

Online (`OnlineTargets`, the default at scale): the frozen teachers see exactly the (possibly
cropped) waveforms the student sees. They live outside the DDP wrapper and outside the
checkpoint; they run in inference mode.

Offline (`OfflineTargets`): targets were extracted once per full utterance
(`usad2.targets.extract`, layout `<root>/<teacher>/<set>/`) and are CUT at the crop's frames.
Teacher frame j of the full utterance is centred at offset + j / rate seconds; online extraction
of a crop starting at sample s would put its frame 0 at s / 16000 + offset, so the cut starts at
j0 = round(s * rate / 16000) (exact when the crop starts on the teacher's hop grid, else off by
less than half a teacher hop) and takes round(crop samples * rate / 16000) frames, or every
remaining frame when the crop reaches the end of the utterance. An uncropped batch (s = 0, crop =
whole utterance) takes all frames, so both modes see identical targets up to float16 storage.

How the modes differ under random crops: a windowed or contextual teacher (YAMNet's 0.96 s
windows, basic-pitch's 2 s windows, any transformer) computes online targets from the crop alone,
so frames near the crop edges see zero padding / less context, whereas offline targets were
computed with the full utterance as context; the offline cut is also rounded to the teacher's
hop grid (at most half a hop of shift). Offline targets are therefore "full-context" targets,
online targets "what the teacher would say about this crop"; the paper's online setting is the
latter. Neither is wrong; the difference vanishes without cropping.
"""
import fractions
import logging
import os

import torch

from usad2.errors import ConfigError
from usad2.targets.store import TargetsReader, TargetsError

logger = logging.getLogger("usad2")
SAMPLE_RATE = 16000


def pad_stack(arrays, device=None):
    """List of (T_i, D) tensors -> ((B, T_max, D) zero-padded, lengths (B,))."""
    lengths = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
    dim = arrays[0].shape[1]
    out = torch.zeros(len(arrays), int(lengths.max()) if len(arrays) else 0, dim)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = a
    if device is not None:
        out, lengths = out.to(device), lengths.to(device)
    return out, lengths


class OnlineTargets:
    """Runs frozen teachers on the batch: `teachers` {name: Teacher}, `layers` {name: [layer ids]}.

    precision: "bf16" runs torch teachers under bf16 autocast, as the student (fp32 otherwise).
    """

    def __init__(self, teachers, layers, precision="fp32"):
        self.teachers = teachers
        self.layers = layers
        self.precision = precision

    def get(self, batch, device="cpu"):
        out = {}
        for name, teacher in self.teachers.items():
            outputs, frame_lengths = teacher.extract(batch.wavs, batch.lengths, self.layers[name],
                                                     precision=self.precision)
            out[name] = ([o.to(device) for o in outputs], frame_lengths.to(device))
        return out


def crop_frame_range(crop_start, crop_length, full_length, num_frames, rate, sample_rate=SAMPLE_RATE):
    """(first, count) teacher frames of a full-utterance target matching a crop (see module doc)."""
    rate = fractions.Fraction(rate)
    first = int(round(fractions.Fraction(int(crop_start)) * rate / sample_rate))
    first = min(max(first, 0), num_frames)
    if int(crop_start) + int(crop_length) >= int(full_length):
        count = num_frames - first
    else:
        count = int(round(fractions.Fraction(int(crop_length)) * rate / sample_rate))
    return first, max(0, min(count, num_frames - first))


class OfflineTargets:
    """Reads `<root>/<teacher>/<set_name>/` targets and cuts them at each utterance's crop.

    `cards` {name: TeacherCard} gives the frame rate; `layers` {name: [layer ids]} must all have
    been extracted (an error says which are missing and how to extract them).
    """

    def __init__(self, root, set_name, cards, layers):
        self.cards = cards
        self.layers = layers
        self.readers = {}
        for name in cards:
            path = os.path.join(root, name, set_name)
            reader = TargetsReader(path)
            missing = [k for k in layers[name] if k not in reader.layers]
            if missing:
                raise ConfigError(f"{path}: layers {missing} of {name} were not extracted (have "
                                  f"{reader.layers}); rerun extract_teacher with --layers "
                                  f"{','.join(map(str, layers[name]))}")
            stored_rate = fractions.Fraction(reader.meta.get("frame_rate", str(cards[name].frame_rate)))
            if stored_rate != cards[name].frame_rate:
                raise ConfigError(f"{path}: extracted at frame rate {stored_rate}, but the card of "
                                  f"{name} says {cards[name].frame_rate}")
            self.readers[name] = reader

    def get(self, batch, device="cpu"):
        out = {}
        for name, reader in self.readers.items():
            per_layer = [[] for _ in self.layers[name]]
            for i, utt in enumerate(batch.utts):
                arrays = reader.get(utt, self.layers[name])
                first, count = crop_frame_range(batch.crop_starts[i], batch.lengths[i],
                                                batch.full_lengths[i], arrays[0].shape[0],
                                                self.cards[name].frame_rate)
                if count <= 0:
                    raise TargetsError(f"{reader.dir}: utterance {utt}: no target frames in the crop "
                                       f"starting at sample {int(batch.crop_starts[i])}")
                for j, a in enumerate(arrays):
                    per_layer[j].append(torch.from_numpy(a[first:first + count]))
            stacked = [pad_stack(arrs, device) for arrs in per_layer]
            out[name] = ([s[0] for s in stacked], stacked[0][1])
        return out


PROBABILITY_TARGETS = ("logit", "raw", "bce", "mse")


def probability_to_logit(p, eps=1e-4):
    """log(p / (1 - p)) of probabilities clamped to [eps, 1 - eps] (bounded at about ±9.2)."""
    p = p.float().clamp(eps, 1.0 - eps)
    return torch.log(p) - torch.log1p(-p)


class LogitTargets:
    """Re-expresses the probability layers of a target provider as log-odds.

    Why it exists: basic-pitch's note, onset and contour posteriors are sparse (almost every value
    near 0.1, rare spikes near 1), and standardised with the frame loss's L1 term (optimum: the
    conditional median) they teach the student to predict "off". Log-odds make them dense. It was
    measured and helps little (egs/multidomain/RESULTS.md section 2: basic-pitch fidelity 0.04-0.09
    -> 0.05-0.17); `--probability_targets mse` (DistillTask) is the mode that does transfer them.

    `layers` {teacher name: [positions in that teacher's layer list to transform]}; providers
    answer {name: ([tensors], lengths)} (`OnlineTargets`, `OfflineTargets`). Padding frames are
    transformed too; the loss masks them out.
    """

    def __init__(self, provider, layers, eps=1e-4):
        self.provider = provider
        self.layers = {name: set(pos) for name, pos in layers.items() if pos}
        self.eps = eps

    def get(self, batch, device="cpu"):
        out = self.provider.get(batch, device)
        for name, positions in self.layers.items():
            if name in out:
                outputs, lengths = out[name]
                out[name] = ([probability_to_logit(o, self.eps) if j in positions else o
                              for j, o in enumerate(outputs)], lengths)
        return out


def with_probability_targets(provider, specs, mode):
    """The provider, with each spec's probability layers as log-odds when `mode` is "logit".

    "raw", "bce" and "mse" keep the probabilities (bce and mse change the loss: DistillTask).
    """
    if mode not in PROBABILITY_TARGETS:
        raise ConfigError(f"--probability_targets must be one of {PROBABILITY_TARGETS}, got {mode!r}")
    if provider is None or mode != "logit":
        return provider
    layers = {s.name: [j for j, t in enumerate(s.teacher_layers) if t in s.probability_layers] for s in specs}
    if not any(layers.values()):
        return provider
    logger.info("targets as log-odds: %s", ", ".join(
        f"{s.name}:L{t}" for s in specs for t in s.teacher_layers if t in s.probability_layers))
    return LogitTargets(provider, layers)
