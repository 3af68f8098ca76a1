"""Text -> token ids with a checkpoint's tokenizer, LM batches, and the Hugging Face-convention loss.

Perplexity convention (the one of Transformers' `*ForCausalLM(labels=ids).loss`):
the token stream is cut into non-overlapping windows of `seq_len` tokens;
inside each window position `t` predicts token `t + 1`, so the first token of
every window gets no loss; the loss is the mean negative log-likelihood (nats)
over all predicted tokens of all windows (windows weighted by their number of
predictions, the last one may be shorter) and perplexity is `exp(loss)`. For
one window this is exactly `model(input_ids=ids, labels=ids).loss`.

Documents: a text file is one document (its lines joined by `"\\n"`), each
JSONL/CSV/TSV record is one. When the checkpoint's preprocessor adds a start
token (keras-hub's GPT-2 and Llama 3 presets: `<|endoftext|>`,
`<|begin_of_text|>`), every document starts with it, so its first real token
is scored too; otherwise (Qwen, klm runs) documents are separated by the
end-of-text token.
"""

import math

import numpy as np

from klm.data.text.raw_lines import iter_raw_lines
from klm.data.text.sources import expand_sources, iter_documents
from klm.errors import ConfigError, DataError
from klm.metrics import perplexity, unknown_token_report


def _documents(data, text_field="text"):
    for source in expand_sources(data):
        if source.format in ("text", "wikitext"):
            text = "\n".join(raw.decode("utf-8", errors="replace") for raw, _ in iter_raw_lines(source.path))
            if text.strip():
                yield text
        else:
            for text, _ in iter_documents(source, text_field=text_field):
                if text.strip():
                    yield text


def _ids(tokenizer, text):
    ids = tokenizer.tokenize(text)
    if hasattr(ids, "numpy"):  # a TF tensor
        ids = ids.numpy()
    elif not isinstance(ids, (list, tuple, np.ndarray)):
        import keras

        ids = keras.ops.convert_to_numpy(ids)
    return np.asarray(ids, dtype="int64").reshape(-1)


def token_stream(checkpoint, data, text_field="text", add_start_token=None):
    """Tokenizes `data` with the checkpoint's tokenizer into one 1-D int32 array.

    Args:
        checkpoint: a `klm.pretrained.Checkpoint`.
        data: a text file, glob, folder (or list of them); JSONL/CSV/TSV use
            `text_field`.
        add_start_token: `None` (the checkpoint's own behaviour, see the
            module docstring), `True` or `False`.

    Returns:
        A 1-D int32 NumPy array of token ids.
    """
    tokenizer = checkpoint.tokenizer
    start = checkpoint.start_token_id
    if add_start_token is False:
        start = None
    elif add_start_token and start is None:
        start = getattr(tokenizer, "start_token_id", None)
        if start is None:
            raise ConfigError(
                f"Expected a tokenizer with a start token for add_start_token=True. Received: "
                f"{type(tokenizer).__name__} without one"
            )
    end = checkpoint.end_token_id
    pieces = []
    for i, text in enumerate(_documents(data, text_field)):
        if start is not None:
            pieces.append(np.array([start], "int64"))
        elif i > 0 and end is not None:
            pieces.append(np.array([end], "int64"))
        pieces.append(_ids(tokenizer, text))
    if not pieces:
        raise DataError(f"Expected some text to evaluate. Received: data={data!r} (empty)")
    return np.concatenate(pieces).astype("int32")


def default_seq_len(model, cap=1024):
    """The model's context length (at most `cap`)."""
    backbone = model.backbone
    length = getattr(backbone, "max_sequence_length", None)
    return int(min(length, cap)) if length else cap


def next_token_nll(model, token_ids, padding_mask):
    """Summed next-token NLL and the number of predicted tokens of one batch.

    Position `t` predicts `t + 1` where both are real tokens (mask set);
    softmax in float32.

    Returns:
        `(sum_nll, count)` as Python floats / ints.
    """
    from keras import ops

    logits = model({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)
    logits = ops.cast(logits[:, :-1, :], "float32")
    targets = ops.convert_to_tensor(np.asarray(token_ids)[:, 1:].astype("int32"))
    mask = np.asarray(padding_mask)
    weights = ops.convert_to_tensor((mask[:, 1:] * mask[:, :-1]).astype("float32"))
    log_z = ops.logsumexp(logits, axis=-1)
    picked = ops.squeeze(ops.take_along_axis(logits, ops.expand_dims(targets, -1), axis=-1), -1)
    total = ops.sum((log_z - picked) * weights)
    return float(ops.convert_to_numpy(total)), int(ops.convert_to_numpy(ops.sum(weights)))


def windows(tokens, seq_len):
    """Non-overlapping windows of `seq_len` tokens: `(ids, mask)` int32, the last padded."""
    tokens = np.asarray(tokens, "int32")
    n = len(tokens)
    count = max(1, math.ceil(n / seq_len))
    ids = np.zeros((count, seq_len), "int32")
    mask = np.zeros((count, seq_len), "int32")
    for i in range(count):
        piece = tokens[i * seq_len : (i + 1) * seq_len]
        ids[i, : len(piece)] = piece
        mask[i, : len(piece)] = 1
    return ids, mask


def hf_convention_loss(model, tokens, seq_len, batch_size=None):
    """Mean next-token NLL of a token stream, Transformers' convention (module docstring).

    Args:
        model: a causal LM taking `{"token_ids", "padding_mask"}`.
        tokens: 1-D token ids.
        seq_len: window length (>= 2).
        batch_size: windows per forward pass (default: fits ~2**27 logits).

    Returns:
        `(loss, predicted_tokens)`.
    """
    if seq_len < 2:
        raise ConfigError(f"Expected --seq-len >= 2. Received: --seq-len={seq_len}")
    if len(tokens) < 2:
        raise DataError(f"Expected at least 2 tokens to evaluate. Received: {len(tokens)} token(s)")
    ids, mask = windows(tokens, seq_len)
    if batch_size is None:
        vocab = int(getattr(model.backbone, "vocabulary_size", 50_000))
        batch_size = max(1, 2**27 // (seq_len * vocab))
    total, count = 0.0, 0
    for start in range(0, len(ids), batch_size):
        batch_ids, batch_mask = ids[start : start + batch_size], mask[start : start + batch_size]
        s, c = next_token_nll(model, batch_ids, batch_mask)
        total, count = total + s, count + c
    return total / max(count, 1), count


def lm_batches(checkpoint, data, seq_len, batch_size, mode="shuffled", seed=0, text_field="text", drop_remainder=False):
    """A `tf.data.Dataset` of `({"token_ids", "padding_mask"}, next_ids)` batches for `fit`.

    The text is tokenized with the checkpoint's tokenizer (`token_stream`)
    and cut by `klm.data.lm_dataset` (`mode` `"shuffled"` or
    `"contiguous"`), the same batches klm's pretraining uses; pair it with
    `klm.losses.SparseCrossEntropyFromLogits` (or
    `SparseCategoricalCrossentropy(from_logits=True)`).

    Returns:
        `(dataset, num_tokens)`.
    """
    import tensorflow as tf

    from klm.data import lm_dataset

    tokens = token_stream(checkpoint, data, text_field=text_field)
    dataset = lm_dataset(tokens, seq_len, batch_size, mode=mode, seed=seed, drop_remainder=drop_remainder)

    def to_inputs(x, y):
        return {"token_ids": x, "padding_mask": tf.ones_like(x)}, y

    return dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE), len(tokens)


def evaluate_checkpoint(checkpoint, data, seq_len=None, batch_size=None, text_field="text", add_start_token=None):
    """Perplexity of a checkpoint on text, Transformers' convention (module docstring).

    Returns:
        A dict: `tokens`, `evaluated_tokens` (predicted), `loss`,
        `perplexity`, `seq_len`, `convention`.
    """
    model = checkpoint.causal_lm
    seq_len = int(seq_len or default_seq_len(model))
    limit = getattr(model.backbone, "max_sequence_length", None)
    if limit and seq_len > limit:
        raise ConfigError(f"Expected --seq-len <= the model's {limit} positions. Received: --seq-len={seq_len}")
    tokens = token_stream(checkpoint, data, text_field=text_field, add_start_token=add_start_token)
    loss, count = hf_convention_loss(model, tokens, seq_len, batch_size=batch_size)
    return {
        "tokens": int(len(tokens)),
        "evaluated_tokens": int(count),
        "loss": float(loss),
        "perplexity": perplexity(loss),
        "seq_len": seq_len,
        "convention": "hf-causal-lm: mean next-token NLL over windows of seq_len, no loss on each window's first token",
        **unknown_token_report(tokens, getattr(checkpoint.tokenizer, "unk_token_id", None), str(data)),
    }
