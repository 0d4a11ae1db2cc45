"""`Usad2Model`: the waveform-in student = Kaldi fbank front end + `StudentEncoder`.

This is what exports hold and what `usad2.load`, the s3prl upstream and the HEAR helper return.
The front end has no parameters; the state dict is the encoder's under the prefix "encoder.".
"""
import torch
from torch import nn

from usad2.audio.frontend import FbankConfig, compute_fbank
from usad2.models.encoder import EncoderConfig, StudentEncoder
from usad2.models.inputs import check_model_input, out_of_memory_error


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
    def frame_rate(self):
        """Output frames per second (50.0 at time_stride 2, 25.0 at 4)."""
        return 1000.0 / self.fbank_config.frame_shift_ms / self.config.time_stride

    @property
    def downsample_rate(self):
        """Input samples per output frame (320 at 50 Hz, 640 at 25 Hz)."""
        return self.fbank_config.shift_samples * self.config.time_stride

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
