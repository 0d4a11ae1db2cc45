"""The student encoder for the Hugging Face modeling code.

Inside the usad2 package this re-exports `usad2.models.encoder`. A Hugging Face model directory
written by `python -m usad2.bin.export --format hf` holds, under this file's name, a verbatim copy
of `usad2/models/encoder.py` (plain torch, no usad2 imports), so that the directory loads with
nothing of usad2 installed.
"""
from usad2.models.encoder import EncoderConfig, EncoderOutput, StudentEncoder  # noqa: F401
