"""Conversations -> token ids with a response mask, truncation, and the report of both.

An example's tokens are, turn after turn, the prompt part (template text up
to the response) and the response followed by the end-of-text token; a
start token comes first for checkpoints that use one. The model reads
`ids[:-1]` and predicts `ids[1:]`; the loss weight of each predicted token
is 1 on response tokens (end-of-text included) and 0 on prompt tokens,
unless `train_on_prompt`.
"""

import dataclasses

import numpy as np

from klm.errors import DataError

TRUNCATE = ("prompt", "refuse")


@dataclasses.dataclass
class EncodedExample:
    """One tokenized example.

    Attributes:
        token_ids: int32 `(length,)`.
        response_mask: bool `(length,)`: the response tokens (and their
            end-of-text tokens).
        source: `"FILE:LINE"`.
        truncated: prompt tokens removed to fit `--seq-len`.
    """

    token_ids: np.ndarray
    response_mask: np.ndarray
    source: str = ""
    truncated: int = 0

    def arrays(self, train_on_prompt=False):
        """`(x, y, weights)`: inputs, next-token targets, per-target loss weights (float32)."""
        x = self.token_ids[:-1]
        y = self.token_ids[1:]
        if train_on_prompt:
            weights = np.ones(len(y), "float32")
        else:
            weights = self.response_mask[1:].astype("float32")
        return x, y, weights


def tokenize_texts(tokenizer, texts):
    """Token ids (lists of ints) of each text, in one tokenizer call."""
    if not texts:
        return []
    from klm.generate import tokens_to_list

    return tokens_to_list(tokenizer.tokenize(list(texts)))


def conversation_pieces(template, conversations, next_prompts=None):
    """The `[(text, is_response)]` of every conversation (see `PromptTemplate.pieces`)."""
    out = []
    for index, conversation in enumerate(conversations):
        next_prompt = None if next_prompts is None else next_prompts[index]
        out.append(template.pieces(conversation.turns, conversation.system, next_prompt=next_prompt))
    return out


def encode_pieces(pieces_list, tokenizer, end_token_id, start_token_id=None):
    """`[(ids, response_mask)]` from the pieces of several conversations (one tokenizer call)."""
    flat = [text for pieces in pieces_list for text, _ in pieces]
    tokenized = iter(tokenize_texts(tokenizer, flat))
    encoded = []
    for pieces in pieces_list:
        ids = [] if start_token_id is None else [int(start_token_id)]
        mask = [False] * len(ids)
        for _, is_response in pieces:
            piece = [int(i) for i in next(tokenized)]
            if is_response:
                piece = piece + [int(end_token_id)]
            ids += piece
            mask += [is_response] * len(piece)
        encoded.append((np.asarray(ids, "int32"), np.asarray(mask, bool)))
    return encoded


def encode_conversations(
    conversations, template, tokenizer, seq_len, truncate="prompt", end_token_id=None, start_token_id=None
):
    """Tokenizes conversations for training or evaluation.

    An example must fit `seq_len` model inputs: at most `seq_len + 1` tokens
    (the last is only a target). Longer examples lose tokens from the start
    of the prompt (`truncate="prompt"`, counted in the report; never tokens
    of the last response, and the start token stays) or are refused
    (`truncate="refuse"`).

    Args:
        conversations: `Conversation`s.
        template: a `PromptTemplate` (or `ChatTemplate`).
        tokenizer: the run's tokenizer.
        seq_len: model inputs per example.
        truncate: `"prompt"` or `"refuse"`.
        end_token_id: the end-of-text id (default: the tokenizer's).
        start_token_id: an id to put first, or `None`.

    Returns:
        `(examples, report)`: a list of `EncodedExample` and a dict with
        `examples`, `tokens`, `response_tokens`, `truncated_examples`,
        `truncated_tokens`, `longest` (tokens, before truncation).

    Raises:
        DataError: with `truncate="refuse"`, the examples that do not fit
            (their count and the first one's file and line); with either, an
            example whose last response alone does not fit.
    """
    if end_token_id is None:
        end_token_id = getattr(tokenizer, "end_token_id", None)
    if end_token_id is None:
        raise DataError(
            "The tokenizer has no end-of-text token to end responses with. Received: a tokenizer "
            f"{type(tokenizer).__name__} without end_token_id"
        )
    encoded = encode_pieces(conversation_pieces(template, conversations), tokenizer, end_token_id, start_token_id)
    capacity = seq_len + 1
    keep_first = 0 if start_token_id is None else 1
    examples, too_long = [], []
    report = {
        "examples": len(conversations),
        "tokens": 0,
        "response_tokens": 0,
        "truncated_examples": 0,
        "truncated_tokens": 0,
        "longest": 0,
    }
    for conversation, (ids, mask) in zip(conversations, encoded):
        report["longest"] = max(report["longest"], len(ids))
        removed = 0
        if len(ids) > capacity:
            if truncate == "refuse":
                too_long.append((conversation.source, len(ids)))
                continue
            removed = len(ids) - capacity
            last_response_start = _last_response_start(mask)
            if last_response_start - removed <= keep_first:
                raise DataError(
                    f"The response on {conversation.source} is {len(ids) - last_response_start} tokens with its "
                    f"end-of-text token, too long for --seq-len {seq_len} even without its prompt. Raise --seq-len "
                    f"or shorten the response. Received: --seq-len={seq_len}"
                )
            ids = np.concatenate([ids[:keep_first], ids[keep_first + removed :]])
            mask = np.concatenate([mask[:keep_first], mask[keep_first + removed :]])
            report["truncated_examples"] += 1
            report["truncated_tokens"] += removed
        report["tokens"] += len(ids)
        report["response_tokens"] += int(mask.sum())
        examples.append(EncodedExample(ids, mask, conversation.source, removed))
    if too_long:
        source, length = too_long[0]
        raise DataError(
            f"{len(too_long)} example(s) do not fit --seq-len {seq_len} (at most {capacity} tokens with the "
            f"template and end-of-text), the first on {source} ({length} tokens). Raise --seq-len, or use "
            f"--truncate prompt to cut their prompts from the start. Received: --truncate=refuse"
        )
    return examples, report


def _last_response_start(mask):
    """Index of the first token of the last response run in `mask`."""
    index = len(mask) - 1
    while index > 0 and mask[index - 1]:
        index -= 1
    return index
