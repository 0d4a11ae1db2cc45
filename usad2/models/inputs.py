"""Checks of what callers hand a `Usad2Model`: the one place the public API validates its input.

`usad2.load(...)(wavs, lengths)`, `usad2.hear` and the s3prl upstream all reach the model through
`Usad2Model.features`, which calls `check_model_input` first. The stage commands refuse bad audio
when they read it (`usad2.audio.io`); this gives the API the same named errors (AudioError)
instead of silently wrong features:
- a NaN or inf sample would make every frame of every layer of its item NaN;
- integer samples (int16 PCM) would be read as floats 32768 times too loud;
- a negative, fractional or too large length would silently drop or invent samples.
Samples outside [-1, 1] are accepted (the front end has no range limit), so are float16/64.
"""
import torch

from usad2.errors import AudioError


def _item_name(names, i):
    return f"item {i}" + (f" ({names[i]!r})" if names is not None and i < len(names) else "")


def check_lengths(wav_lengths, sizes, names=None):
    """(B,) long lengths from `wav_lengths` (None: full sizes); AudioError on bad values."""
    if wav_lengths is None:
        return torch.tensor(sizes, dtype=torch.long)
    try:
        lengths = torch.as_tensor(wav_lengths).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as e:
        raise AudioError(f"waveform lengths: not a sequence of integers ({e})") from None
    if lengths.dtype == torch.bool or lengths.is_complex():
        raise AudioError(f"waveform lengths: dtype {lengths.dtype}, expected integers")
    if lengths.dim() != 1 or lengths.shape[0] != len(sizes):
        raise AudioError(f"waveform lengths: shape {tuple(lengths.shape)} for a batch of {len(sizes)} waveforms")
    if lengths.is_floating_point():
        if not torch.isfinite(lengths).all() or not torch.equal(lengths, lengths.round()):
            raise AudioError(f"waveform lengths: {lengths.tolist()} are not whole sample counts")
    lengths = lengths.long()
    for i, (n, size) in enumerate(zip(lengths.tolist(), sizes)):
        if n < 0:
            raise AudioError(f"waveform {_item_name(names, i)}: negative length {n}")
        if n > size:
            raise AudioError(f"waveform {_item_name(names, i)}: length {n} > its {size} samples")
    return lengths


def check_model_input(wavs, wav_lengths=None, names=None):
    """Validate a waveform batch: (B, N) tensor or list of 1-D tensors, float samples, finite
    within each item's length, lengths whole numbers in 0..N. Returns the (B,) long lengths.

    Raises AudioError naming the item (and its name from `names`, when given) and what is wrong.
    """
    if torch.is_tensor(wavs):
        if wavs.dim() != 2:
            raise AudioError(f"waveform batch: expected (B, N) waveforms, got shape {tuple(wavs.shape)}")
        items = list(wavs)
    elif isinstance(wavs, (list, tuple)):
        items = list(wavs)
        for i, w in enumerate(items):
            if not torch.is_tensor(w):
                raise AudioError(f"waveform {_item_name(names, i)}: expected a torch tensor, got {type(w).__name__}")
            if w.dim() != 1:
                raise AudioError(f"waveform {_item_name(names, i)}: expected a 1-D waveform, got shape "
                                 f"{tuple(w.shape)}")
    else:
        raise AudioError(f"waveform batch: expected a (B, N) tensor or a list of 1-D tensors, got "
                         f"{type(wavs).__name__}")
    if not items:
        raise AudioError("waveform batch: no waveforms")
    for i, w in enumerate(items):
        if not w.is_floating_point():
            hint = " (int16 PCM: divide by 32768)" if w.dtype == torch.int16 else ""
            raise AudioError(f"waveform {_item_name(names, i)}: samples of dtype {w.dtype}; expected float "
                             f"samples in [-1, 1]{hint}")
    lengths = check_lengths(wav_lengths, [w.shape[-1] for w in items], names)
    if torch.is_tensor(wavs):
        valid = torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths.to(wavs.device)[:, None]
        bad = ((~torch.isfinite(wavs)) & valid).sum(dim=1).tolist()
    else:
        bad = [int((~torch.isfinite(w[:n])).sum()) for w, n in zip(items, lengths.tolist())]
    for i, count in enumerate(bad):
        if count:
            raise AudioError(f"waveform {_item_name(names, i)}: {count} NaN/inf samples "
                             f"(of {int(lengths[i])}); NaN would make every output frame NaN")
    return lengths


OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory")


def out_of_memory_error(error, feat_lengths, frame_shift_ms):
    """An AudioError for an allocator failure `error` of a whole-input forward, else None.

    Attention memory grows with the square of the input length: one hour in one forward asks for
    terabytes. The message says how long the batch was and how to run it in chunks.
    """
    text = str(error)
    if not isinstance(error, torch.OutOfMemoryError) and not any(m in text for m in OOM_MARKERS):
        return None
    seconds = float(feat_lengths.max()) * frame_shift_ms / 1000 if len(feat_lengths) else 0.0
    return AudioError(f"waveform batch of {len(feat_lengths)} x up to {seconds:.0f} s: out of memory in the "
                      f"encoder (its attention grows with the square of the length); run long audio in chunks: "
                      f"usad2.hear.load_model(export, chunk_seconds=30) does, or cut the audio before the "
                      f"model ({text.strip().splitlines()[0][:160] if text.strip() else type(error).__name__})")
