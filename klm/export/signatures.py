"""The serving functions that read texts: `classify_function`, `score_function`, and their shared token rules.

Each function returns a Python callable of TensorFlow ops (TensorFlow backend
only) that `klm.export.archive` turns into a SavedModel signature: strings
in, the run's tokenizer inside the graph, the Keras model's outputs out.

Token conventions, shared with `klm.export.generation` and
`klm.export.reference`:

- `start_token_id(run)`: runs started from a pretrained checkpoint whose
  preprocessor adds a start token (GPT-2, Llama 3) begin every document and
  prompt with it, as `klm evaluate` and `klm generate` do; klm's own runs and
  Qwen add none.
- `document_prefix_id(run)`: the token a scored text is conditioned on: that
  start token, else the end-of-text token (the separator of the training
  stream and of `klm evaluate`'s documents).
- `sft_prompt_parts(run)`: an SFT run's template around a raw prompt.
"""

from klm.export.config import ExportError
from klm.export.core_ops import core_ops_only
from klm.generate import run_template, sft_settings

# One extra non-empty text (see `ragged_ids`).
SENTINEL_TEXT = "a"


def ragged_ids(tokenizer, texts):
    """Token ids of a `[batch]` string tensor as an int32 `tf.RaggedTensor`."""
    import tensorflow as tf

    # One extra non-empty text: keras-hub's byte tokenizer fails on a batch of
    # empty strings only (it squeezes an empty axis); its row is dropped.
    ids = tokenizer.tokenize(tf.concat([texts, tf.constant([SENTINEL_TEXT])], axis=0))
    if not isinstance(ids, tf.RaggedTensor):  # a tokenizer with its own sequence_length
        ids = tf.RaggedTensor.from_tensor(ids, padding=tf.cast(tokenizer.pad_token_id, ids.dtype))
    return tf.cast(ids[:-1], tf.int32)


def end_token_id(tokenizer):
    """The tokenizer's end-of-text id (`ExportError` when it has none)."""
    end_id = getattr(tokenizer, "end_token_id", None)
    if end_id is None:
        raise ExportError(
            "Expected a tokenizer with an end-of-text token (klm's tokenizers have one). "
            f"Received: {type(tokenizer).__name__} without end_token_id"
        )
    return int(end_id)


def pad_token_id(tokenizer):
    """The tokenizer's padding id (0 when it has none, as `klm generate`)."""
    return int(getattr(tokenizer, "pad_token_id", 0) or 0)


def start_token_id(run):
    """The id a pretrained run puts before each document and prompt, or `None` (module docstring)."""
    pretrained = (getattr(run, "config", None) or {}).get("pretrained") or {}
    if not pretrained.get("add_start_token"):
        return None
    start_id = getattr(run.tokenizer, "start_token_id", None)
    return None if start_id is None else int(start_id)


def document_prefix_id(run):
    """The token a scored text is conditioned on: the start token, else end-of-text."""
    start_id = start_token_id(run)
    return end_token_id(run.tokenizer) if start_id is None else start_id


def sft_prompt_parts(run):
    """`(before, after, start_id)` of an SFT run's template, or `None`.

    A raw prompt becomes `before + prompt + after`, after `start_id` if any.
    """

    template = run_template(run)
    if template is None:
        return None
    before, after = template.single_turn_parts()
    return before, after, sft_settings(run).get("start_token_id")


def classify_function(run):
    """`texts -> {probabilities, label_id, label}` in TF ops (TensorFlow backend)."""
    import tensorflow as tf

    model, tokenizer = run.model, run.tokenizer
    seq_len, pad_id = run.seq_len, pad_token_id(tokenizer)
    multi_label = bool(run.multi_label)
    labels = [str(label) for label in run.labels]

    def classify(texts):
        ids = ragged_ids(tokenizer, texts)[:, :seq_len]
        lengths = ids.row_lengths()
        token_ids = ids.to_tensor(default_value=pad_id, shape=[None, seq_len])
        padding_mask = tf.sequence_mask(lengths, seq_len, dtype=tf.int32)
        logits = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
        logits = tf.cast(logits, tf.float32)
        probabilities = tf.sigmoid(logits) if multi_label else tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        label = tf.gather(tf.constant(labels, dtype=tf.string), label_id)
        return {"probabilities": probabilities, "label_id": label_id, "label": label}

    return core_ops_only(classify)


def score_function(run):
    """`texts -> {log_likelihood, num_tokens, perplexity}` in TF ops.

    Each text, truncated to the run's `seq_len` tokens, is scored as a new
    document: conditioned on `document_prefix_id(run)`.
    """
    import tensorflow as tf

    model, tokenizer = run.model, run.tokenizer
    seq_len, pad_id, prefix_id = run.seq_len, pad_token_id(tokenizer), document_prefix_id(run)

    def score(texts):
        ids = ragged_ids(tokenizer, texts)[:, :seq_len]
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        start = tf.RaggedTensor.from_tensor(tf.fill([ids.nrows(), 1], tf.constant(prefix_id, tf.int32)))
        full = tf.concat([start, ids], axis=1).to_tensor(default_value=pad_id)  # [batch, 1 + max_len]
        width = tf.maximum(tf.shape(full)[1], 2)
        full = tf.pad(full, [[0, 0], [0, width - tf.shape(full)[1]]], constant_values=pad_id)
        inputs, targets = full[:, :-1], full[:, 1:]
        mask = tf.sequence_mask(lengths, width - 1)
        logits = model({"token_ids": inputs, "padding_mask": tf.cast(mask, tf.int32)}, training=False)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        token_log_probs = tf.gather(log_probs, targets, batch_dims=2)  # [batch, width - 1]
        log_likelihood = tf.reduce_sum(tf.where(mask, token_log_probs, 0.0), axis=-1)
        perplexity = tf.exp(-log_likelihood / tf.cast(tf.maximum(lengths, 1), tf.float32))
        return {"log_likelihood": log_likelihood, "num_tokens": lengths, "perplexity": perplexity}

    return core_ops_only(score)
