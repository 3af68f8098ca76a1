"""Language-model data: token streams and their `tf.data` batches.

- `corpus`: `load_corpus` / `Corpus`, the token arrays (or prepared splits)
  of train/valid/test in one call.
- `batches`: `lm_dataset`, `(x, y)` next-token batches from a token stream,
  and the step and token counts of an epoch.
- `model_inputs`: `lm_model_inputs` (batches as the models take them) and
  `num_tokens`.
"""
