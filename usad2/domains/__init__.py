"""Automatic domain inference (issue 16): a speech / audio / music posterior per utterance.

A *tagger* (`tagger.py`) is a teacher card whose chosen layer holds class scores, plus a mapping
file that gives every class a domain; its frame posteriors are pooled per utterance (`infer.py`)
into `utt2domain_post` for the soft domain weights of distillation (docs/method.md §3.5).
"""
