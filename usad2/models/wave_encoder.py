"""`Usad2Model`: the waveform-in student = Kaldi fbank front end + `StudentEncoder`.

This is what exports hold and what `usad2.load`, the s3prl upstream and the HEAR helper return.
The front end has no parameters; the state dict is the encoder's under the prefix "encoder.".
Its output timing (`frame_timing`: exact rate, centre of frame 0, samples per frame) is computed
here once; distillation's alignment, the probe, s3prl's downsample rate, HEAR / X-ARES and
model_info all read it from the model.
"""
import fractions
from typing import NamedTuple

import torch
from torch import nn

from usad2.audio.frontend import FbankConfig, compute_fbank
from usad2.models.encoder import EncoderConfig, StudentEncoder
from usad2.models.inputs import check_model_input, out_of_memory_error


class FrameTiming(NamedTuple):
    """When the student's output frames are: frame t is centred at offset + t / rate seconds."""
    rate: fractions.Fraction  # output frames per second, exact (50 at time_stride 2, 25 at 4)
    offset: float  # seconds from the start of the audio to the centre of frame 0
    samples_per_frame: int  # input samples per output frame (320 at 50 Hz, 640 at 25 Hz)


def frame_timing(config, fbank_config):
    """The FrameTiming of an EncoderConfig with a FbankConfig (no model needs to be built).

    Output frame t is centred on fbank frame time_stride * t (the conv subsampler's kernel 3 and
    padding 1, `usad2.models.encoder`), and fbank frame f is centred at (f * shift + window / 2)
    samples; so frame 0 is centred at half a window and frames are shift * time_stride apart.
    """
    step = fbank_config.shift_samples * config.time_stride
    return FrameTiming(fractions.Fraction(fbank_config.sample_rate, step),
                       (fbank_config.window_samples / 2) / fbank_config.sample_rate, step)


class Usad2Model(nn.Module):
    """forward(wavs (B, N) float 16 kHz, wav_lengths (B,)) -> EncoderOutput."""

    def __init__(self, config, fbank_config=None):
        super().__init__()
        if isinstance(config, dict):
            config = EncoderConfig.from_dict(config)
        if fbank_config is None:
            fbank_config = FbankConfig(num_mel_bins=config.num_mel_bins)
        elif isinstance(fbank_config, dict):
            fbank_config = FbankConfig.from_dict(fbank_config)
        if fbank_config.num_mel_bins != config.num_mel_bins:
            raise ValueError(f"fbank has {fbank_config.num_mel_bins} bins but the encoder expects "
                             f"{config.num_mel_bins}")
        self.config = config
        self.fbank_config = fbank_config
        self.encoder = StudentEncoder(config)

    @property
    def timing(self):
        """FrameTiming of the outputs: exact rate, centre of frame 0, samples per frame."""
        return frame_timing(self.config, self.fbank_config)

    @property
    def frame_rate(self):
        """Output frames per second as a float (50.0 at time_stride 2, 25.0 at 4); exact: timing.rate."""
        return float(self.timing.rate)

    @property
    def downsample_rate(self):
        """Input samples per output frame (320 at 50 Hz, 640 at 25 Hz)."""
        return self.timing.samples_per_frame

    def features(self, wavs, wav_lengths=None):
        """The fbank front end: (feats (B, T, bins), feat_lengths (B,)) on the model's device.

        The fbank runs on the waves' own device (no host round trip for GPU batches) and in fp32
        even inside a bf16 autocast region: log-mel energies span a range bf16 would round coarsely.
        """
        device = next(self.parameters()).device
        wav_lengths = check_model_input(wavs, wav_lengths)  # AudioError: NaN/inf, int samples, bad lengths
        if torch.is_tensor(wavs):
            wavs = wavs.detach().float()
        else:
            wavs = [w.detach().float() for w in wavs]
        if wav_lengths is not None:
            wav_lengths = torch.as_tensor(wav_lengths).cpu()
        first = wavs if torch.is_tensor(wavs) else wavs[0]
        with torch.autocast(device_type=first.device.type, enabled=False):  # the fbank stays fp32
            feats, feat_lengths = compute_fbank(wavs, wav_lengths, self.fbank_config)
        return feats.to(device), feat_lengths.to(device)

    def forward(self, wavs, wav_lengths=None):
        """Whole-input forward (attention memory grows with the square of the length: for long
        audio use `usad2.hear.load_model`, which runs it in chunks). Running out of memory raises
        AudioError saying so, not the allocator's error."""
        feats, feat_lengths = self.features(wavs, wav_lengths)
        try:
            return self.encoder(feats, feat_lengths)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            err = out_of_memory_error(e, feat_lengths, self.fbank_config.frame_shift_ms)
            if err is None:
                raise
            raise err from None
