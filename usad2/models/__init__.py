"""usad2.models: the student encoder and everything built around it.

encoder.py (plain torch, vendorable: EncoderConfig, StudentEncoder, EncoderOutput),
presets.py (named sizes), heads.py (prediction heads), wave_encoder.py (Usad2Model = fbank +
encoder), export.py (the export file format), upscale.py (depth up-scaling).
"""
