"""usad2.llm_eval: LLM-based evaluation of frozen encoders (docs/method.md#6-evaluation).

The XARES-LLM protocol on the probe's models and tasks: a frozen encoder's frames (pooled in time)
go through a linear projector into a small causal LM (SmolLM2-135M by default) trained with LoRA,
and every label of the task suite is asked as a question and answered as text.
decoder (the LM: pinned GGUF wheel, dequantised once, or a local directory), data (tasks as
instructions and captions), tokens (pooled audio tokens in the probe's feature cache), model
(projector + LoRA LM, loss, greedy decoding), train (resumable training loop), score (exact match,
outside-label-set rate, chrF), run (per-model evaluation and the outputs).
"""
