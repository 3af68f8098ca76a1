"""SFT metrics: response-only loss and perplexity, greedy exact match and token F1."""

import collections

import numpy as np

# A module import: klm.generate imports klm.sft, so importing klm.generate first finds it half-initialized.
from klm import generate as text_generation
from klm.metrics import perplexity as clamped_perplexity
from klm.sft.conversations import Conversation
from klm.sft.encoding import conversation_pieces, encode_pieces, fit_prompt, tokenize_texts


def response_loss(model, batches):
    """`(mean loss, tokens)` over the weighted (response) targets of `batches`.

    The mean is over tokens (`sum(loss * weight) / sum(weight)`), not over
    batches, so it does not depend on the batching.
    """
    from keras import ops

    from klm.losses import sparse_cross_entropy_from_logits

    total, count = 0.0, 0.0
    for inputs, targets, weights in batches:
        logits = model(inputs, training=False)
        losses = ops.convert_to_numpy(sparse_cross_entropy_from_logits(targets, logits))
        total += float(np.sum(losses * weights, dtype="float64"))
        count += float(np.sum(weights, dtype="float64"))
    return (total / count if count else float("nan")), int(count)


def per_example_losses(model, batch):
    """Mean response loss of each example of one batch (packed rows: per segment)."""
    from keras import ops

    from klm.losses import sparse_cross_entropy_from_logits

    inputs, targets, weights = batch
    losses = ops.convert_to_numpy(sparse_cross_entropy_from_logits(targets, model(inputs, training=False)))
    out = []
    segments = inputs.get("segment_ids")
    for row in range(len(targets)):
        ids = [1] if segments is None else sorted(set(segments[row].tolist()) - {0})
        for segment in ids:
            where = np.ones_like(weights[row], bool) if segments is None else segments[row] == segment
            w = weights[row] * where
            if not np.any(w):
                continue  # an empty (filler) row
            out.append(float(np.sum(losses[row] * w) / np.sum(w)))
    return out


def normalize(text):
    return " ".join(str(text).split())


def token_f1(prediction, reference):
    """Bag-of-words F1 of two whitespace-tokenized strings (SQuAD's token F1)."""
    predicted, expected = normalize(prediction).split(), normalize(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def prompt_ids(template, tokenizer, conversations, end_token_id, start_token_id=None):
    """Token ids of each conversation's history plus its last prompt, ready to generate the last response."""
    history = [Conversation(c.turns[:-1], c.system, c.source, c.format) for c in conversations]
    pieces = conversation_pieces(template, history, next_prompts=[c.turns[-1][0] for c in conversations])
    return [ids for ids, _ in encode_pieces(pieces, tokenizer, end_token_id, start_token_id)]


def generation_metrics(
    model, tokenizer, template, conversations, max_new_tokens, end_token_id, start_token_id=None, limit=None, samples=3
):
    """Greedy generation of each conversation's last response against the reference.

    The reference goes through the tokenizer and back (so lower-casing and
    `<unk>` of a word tokenizer count as the model's own spelling); both
    texts are whitespace-normalized. Exact match: equal texts; token F1:
    bag-of-words F1.

    Returns:
        dict: `examples`, `exact_match`, `token_f1` (fractions in [0, 1]),
        `samples` (the first `samples` prompts, references and generations).
    """
    import keras_hub

    sampler = keras_hub.samplers.GreedySampler()
    prompts = prompt_ids(template, tokenizer, conversations, end_token_id, start_token_id)
    references = [
        text_generation.detokenize(tokenizer, ids)
        for ids in tokenize_texts(tokenizer, [c.turns[-1][1] for c in conversations])
    ]
    pad_id = getattr(tokenizer, "pad_token_id", 0) or 0
    exact, f1s, shown = 0, [], []
    for index, (conversation, ids, reference) in enumerate(zip(conversations, prompts, references)):
        ids = fit_prompt(ids, limit, max_new_tokens, keep_first=0 if start_token_id is None else 1)
        generated = text_generation.detokenize(
            tokenizer,
            text_generation.generate_ids(
                model, ids, max_new_tokens, sampler, stop_token_id=end_token_id, pad_id=pad_id
            ),
        )
        match = normalize(generated) == normalize(reference)
        exact += int(match)
        f1s.append(token_f1(generated, reference))
        if index < samples:
            shown.append(
                {
                    "prompt": conversation.turns[-1][0],
                    "reference": conversation.turns[-1][1],
                    "generated": generated,
                    "exact_match": bool(match),
                }
            )
    count = len(conversations)
    return {
        "examples": count,
        "exact_match": exact / count if count else 0.0,
        "token_f1": float(np.mean(f1s)) if f1s else 0.0,
        "samples": shown,
    }


def perplexity(loss):
    return clamped_perplexity(loss) if loss == loss else float("nan")
