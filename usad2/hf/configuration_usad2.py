"""Configuration of a usad2 student encoder as a Hugging Face model.

Written into every directory of `python -m usad2.bin.export --format hf` and loaded from there by
`transformers.AutoConfig` / `AutoModel` with `trust_remote_code=True`; it needs transformers only.
`encoder_config` and `fbank_config` are usad2's own `EncoderConfig` / `FbankConfig` dicts (the
same as in a `.pt` export); `usad2_extra` is the export's provenance (training steps, teachers).
The usual transformers names (hidden_size, num_hidden_layers, num_attention_heads) are derived.
"""
from transformers import PretrainedConfig


class Usad2Config(PretrainedConfig):
    model_type = "usad2"

    def __init__(self, encoder_config=None, fbank_config=None, usad2_version=None, usad2_extra=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.encoder_config = dict(encoder_config or {})
        self.fbank_config = dict(fbank_config or {})
        self.usad2_version = usad2_version
        self.usad2_extra = dict(usad2_extra or {})
        self.hidden_size = int(self.encoder_config.get("d_model", 384))
        self.num_hidden_layers = int(self.encoder_config.get("num_layers", 12))
        self.num_attention_heads = int(self.encoder_config.get("num_heads", 6))
