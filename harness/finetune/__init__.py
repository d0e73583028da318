"""Fine-tuning and continued pre-training of T5 v1.1, the t5x way.

The paper-scale stack (``python -m harness finetune``); the tiny embedded
pairs of ``checkpoints/`` come from the other one, ``harness.training``
(AdamW, in-process).

  python -m harness finetune --gin_file finetune/<name>.gin --workdir DIR

Modules: `config` (the run's settings and their gin files), `steps` (what
one step computes: the model, Adafactor, accumulation, dropout, the mesh),
`trainer` (the loop: resume, logs, checkpoints, evaluation, export),
`inputs` (the loop's microbatches), `data` (seqio tasks and batches),
`span_corruption` (T5's objective), `checkpoint` (orbax), `mfu` (model
FLOPs and their utilisation), `validate` (greedy decoding metrics),
`export` (the Hugging Face folder), `cli` (the command). Imports stay
light: ``python -m harness list`` imports this package (for the command)
without loading gin, jax, TensorFlow or the models.
"""
