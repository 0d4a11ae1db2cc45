"""Audio: loading any sox/soundfile format to the 16 kHz mono float contract, and the fbank front end."""
