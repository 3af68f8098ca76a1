"""Conversations -> token ids with a response mask, truncation, and the report of both.

An example's tokens are, turn after turn, the prompt part (template text up
to the response) and the response followed by the end-of-text token; a
start token comes first for checkpoints that use one. The model reads
`ids[:-1]` and predicts `ids[1:]`; the loss weight of each predicted token
is 1 on response tokens (end-of-text included) and 0 on prompt tokens,
unless `train_on_prompt`.
"""

import dataclasses
import re

import numpy as np

from klm.errors import DataError

TRUNCATE = ("prompt", "refuse")

# An example keeps at most `seq_len + 1` tokens, from its end, so only the end
# of each piece (a prompt, a response) can ever be kept. A piece longer than
# this many characters per kept token is cut to its end *before* it is
# tokenized, so that memory stays bounded by `seq_len` however long an example
# is (a 12 MB prompt took gigabytes to tokenize whole, only to be cut to
# `seq_len` tokens). 64 characters per token is far above what tokenizers
# average on text (about 6 for words, 4 for sentencepiece, 1 for bytes), so
# the end that is kept still holds more than `seq_len + 1` tokens, and the
# tokens of the example are those of the whole text: the first token of the
# kept end, which a cut inside a word may change, is always truncated away.
CHARACTERS_PER_TOKEN_BOUND = 64
_WHITESPACE_AFTER_TEXT = re.compile(r"(?<=\S)\s")


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
    return tokens_to_list(tokenizer.tokenize(list(texts)))


def conversation_pieces(template, conversations, next_prompts=None):
    """The `[(text, is_response)]` of every conversation (see `PromptTemplate.pieces`)."""
    out = []
    for index, conversation in enumerate(conversations):
        next_prompt = None if next_prompts is None else next_prompts[index]
        out.append(template.pieces(conversation.turns, conversation.system, next_prompt=next_prompt))
    return out


def text_end(text, max_characters):
    """`(end, cut)`: the last `max_characters` or so of `text`, and how many characters were cut off.

    The cut moves forward to the next whitespace that follows a non-space
    character, when there is one, so that the end starts with whole words
    (and keeps the space that byte-level BPE tokenizers attach to a word).

    Example:

    >>> text_end("one two three four", 9)
    (' four', 13)
    """
    if max_characters is None or len(text) <= max_characters:
        return text, 0
    start = len(text) - max_characters
    match = _WHITESPACE_AFTER_TEXT.search(text, start)
    if match is not None:
        start = match.start()
    return text[start:], start


def encode_pieces(pieces_list, tokenizer, end_token_id, start_token_id=None, max_characters=None):
    """`[(ids, response_mask)]` from the pieces of several conversations (one tokenizer call).

    With `max_characters`, each piece longer than that is cut to its end
    before tokenizing (see `text_end`); `encode_conversations` then gets
    `[(ids, response_mask, cut)]`, `cut` a list of the characters cut off
    each piece of the conversation.
    """
    flat, cuts = [], []
    for pieces in pieces_list:
        cuts.append([])
        for text, _ in pieces:
            text, cut = text_end(text, max_characters)
            flat.append(text)
            cuts[-1].append(cut)
    tokenized = iter(tokenize_texts(tokenizer, flat))
    encoded = []
    for pieces, cut in zip(pieces_list, cuts):
        ids = [] if start_token_id is None else [int(start_token_id)]
        mask = [False] * len(ids)
        for _, is_response in pieces:
            piece = [int(i) for i in next(tokenized)]
            if is_response:
                piece = piece + [int(end_token_id)]
            ids += piece
            mask += [is_response] * len(piece)
        arrays = (np.asarray(ids, "int32"), np.asarray(mask, bool))
        encoded.append(arrays if max_characters is None else arrays + (cut,))
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

    Memory stays bounded by `seq_len`: a piece longer than
    `CHARACTERS_PER_TOKEN_BOUND * (seq_len + 1)` characters is cut to its
    end before tokenizing (an example that long is truncated or refused in
    any case; the tokens kept are the same).

    Returns:
        `(examples, report)`: a list of `EncodedExample` and a dict with
        `examples`, `tokens`, `response_tokens`, `truncated_examples`,
        `truncated_tokens`, `longest` (tokens, before truncation; both count
        only the tokenized text) and `cut_characters` (characters cut off
        before tokenizing).

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
    capacity = seq_len + 1
    pieces_list = conversation_pieces(template, conversations)
    encoded = encode_pieces(
        pieces_list,
        tokenizer,
        end_token_id,
        start_token_id,
        max_characters=CHARACTERS_PER_TOKEN_BOUND * capacity,
    )
    keep_first = 0 if start_token_id is None else 1
    examples, too_long = [], []
    report = {
        "examples": len(conversations),
        "tokens": 0,
        "response_tokens": 0,
        "truncated_examples": 0,
        "truncated_tokens": 0,
        "longest": 0,
        "cut_characters": 0,
    }
    for conversation, pieces, (ids, mask, cut) in zip(conversations, pieces_list, encoded):
        report["longest"] = max(report["longest"], len(ids))
        removed = 0
        if len(ids) > capacity or any(cut):
            at_least = "at least " if any(cut) else ""
            if truncate == "refuse":
                too_long.append((conversation.source, f"{at_least}{len(ids)}"))
                continue
            removed = max(0, len(ids) - capacity)
            last_response_start = _last_response_start(mask)
            last_response_cut = cut[max(i for i, (_, is_response) in enumerate(pieces) if is_response)]
            if last_response_start - removed <= keep_first or last_response_cut:
                raise DataError(
                    f"The response on {conversation.source} is {at_least}{len(ids) - last_response_start} tokens "
                    f"with its end-of-text token, too long for --seq-len {seq_len} even without its prompt. Raise "
                    f"--seq-len or shorten the response. Received: --seq-len={seq_len}"
                )
            ids = np.concatenate([ids[:keep_first], ids[keep_first + removed :]])
            mask = np.concatenate([mask[:keep_first], mask[keep_first + removed :]])
            report["truncated_examples"] += 1
            report["truncated_tokens"] += removed
            report["cut_characters"] += sum(cut)
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


def tokens_to_list(tokenized):
    """Token ids per prompt as Python lists (ragged: prompts differ in length)."""
    if hasattr(tokenized, "to_list"):  # tf.RaggedTensor
        return tokenized.to_list()
    if isinstance(tokenized, (list, tuple)):  # ragged output on JAX/PyTorch
        return [[int(i) for i in np.asarray(row).reshape(-1)] for row in tokenized]
    return [[int(i) for i in row] for row in np.asarray(tokenized)]


def fit_prompt(ids, limit, max_new_tokens, keep_first=0):
    """Cuts a prompt's oldest tokens so that prompt + `max_new_tokens` fit `limit` positions (`None`: as is)."""
    if limit is None or len(ids) + max_new_tokens <= limit:
        return list(ids)
    room = max(limit - max_new_tokens, keep_first + 1)
    return list(ids[:keep_first]) + list(ids[len(ids) - (room - keep_first) :])
