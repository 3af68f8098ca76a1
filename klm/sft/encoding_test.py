import json

import numpy as np
import pytest

from klm.errors import DataError
from klm.sft.conversations import Conversation, read_conversations
from klm.sft.encoding import CHARACTERS_PER_TOKEN_BOUND, conversation_pieces, encode_conversations, encode_pieces
from klm.sft.prompt_template import PromptTemplate


@pytest.fixture(scope="module")
def tokenizer():
    from klm.data import train_tokenizer

    return train_tokenizer("word", ["user assistant reverse : a b c d e f g h sys"])


def test_equivalent_formats_give_the_same_tokens_and_mask(tmp_path, tokenizer):
    path = tmp_path / "d.jsonl"
    records = [
        {"prompt": "reverse: a b c", "response": "c b a"},
        {"instruction": "reverse: a b c", "input": "", "output": "c b a"},
        {"messages": [{"role": "user", "content": "reverse: a b c"}, {"role": "assistant", "content": "c b a"}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    (tmp_path / "d.tsv").write_text("prompt\tresponse\nreverse: a b c\tc b a\n")
    conversations = read_conversations(path) + read_conversations(tmp_path / "d.tsv")
    examples, report = encode_conversations(conversations, PromptTemplate(), tokenizer, seq_len=32)
    first = examples[0]
    for other in examples[1:]:
        np.testing.assert_array_equal(other.token_ids, first.token_ids)
        np.testing.assert_array_equal(other.response_mask, first.response_mask)
    words = [tokenizer.id_to_token(int(i)) for i in first.token_ids]
    # "user: reverse: a b c \n assistant: " (basic_english drops ":") then "c b a" and end-of-text; only the
    # response is masked in.
    assert words[:-4] == ["user", "reverse", "a", "b", "c", "assistant"]
    assert first.token_ids[-1] == tokenizer.end_token_id
    assert first.response_mask.tolist() == [False] * 6 + [True] * 4
    x, y, w = first.arrays()
    assert len(x) == len(y) == len(w) == 9 and w.tolist() == [0.0] * 5 + [1.0] * 4
    assert first.arrays(train_on_prompt=True)[2].tolist() == [1.0] * 9
    assert report == {
        "examples": 4,
        "tokens": 40,
        "response_tokens": 16,
        "truncated_examples": 0,
        "truncated_tokens": 0,
        "longest": 10,
        "cut_characters": 0,
    }


def test_multi_turn_chat_masks_every_assistant_turn(tokenizer):
    conversation = Conversation([("a", "b"), ("c", "d e")], system="sys")
    (example,), _ = encode_conversations([conversation], PromptTemplate(), tokenizer, seq_len=32)
    words = [tokenizer.id_to_token(int(i)) for i in example.token_ids]
    end = tokenizer.id_to_token(tokenizer.end_token_id)
    assert words == ["sys", "user", "a", "assistant", "b", end, "user", "c", "assistant", "d", "e", end]
    assert [w for w, m in zip(words, example.response_mask) if m] == ["b", end, "d", "e", end]


def test_truncation_from_the_prompt_start_or_refusal(tokenizer):
    long = Conversation([("a b c d e f g h a b c d", "h g")], source="f.jsonl:7")
    short = Conversation([("a", "b")], source="f.jsonl:8")
    (cut, kept), report = encode_conversations([long, short], PromptTemplate(), tokenizer, seq_len=8)
    assert len(cut.token_ids) == 9 and cut.truncated == 17 - 9  # seq_len + 1 tokens kept
    assert report["truncated_examples"] == 1 and report["truncated_tokens"] == 8 and report["longest"] == 17
    assert cut.response_mask.sum() == 3  # "h g" + end-of-text kept whole
    assert kept.truncated == 0
    with pytest.raises(DataError, match=r"1 example\(s\) do not fit --seq-len 8.*f.jsonl:7.*--truncate=refuse"):
        encode_conversations([long, short], PromptTemplate(), tokenizer, seq_len=8, truncate="refuse")
    with pytest.raises(DataError, match="response on f.jsonl:9 .* too long for --seq-len 4"):
        encode_conversations(
            [Conversation([("a", "b c d e")], source="f.jsonl:9")], PromptTemplate(), tokenizer, seq_len=4
        )


def test_start_token_comes_first_and_survives_truncation(tokenizer):
    conversation = Conversation([("a b c d e f g", "h")])
    (example,), _ = encode_conversations(
        [conversation], PromptTemplate(), tokenizer, seq_len=6, start_token_id=tokenizer.start_token_id
    )
    assert example.token_ids[0] == tokenizer.start_token_id and len(example.token_ids) == 7


class SpyTokenizer:
    """A tokenizer that records the longest text it was given."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.longest = 0

    def tokenize(self, texts):
        self.longest = max([self.longest] + [len(text) for text in texts])
        return self.tokenizer.tokenize(texts)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_long_examples_are_cut_before_tokenizing_with_the_same_tokens(tokenizer):
    # Issue 22, item 29: a 12 MB example was tokenized whole (gigabytes) before being cut to seq_len tokens.
    words = np.random.default_rng(0).choice(list("abcdefgh"), 100_000)
    prompt = " ".join(words)  # 200,000 characters
    conversation = Conversation([(prompt, "h g")], system="sys", source="f.jsonl:3")
    spy = SpyTokenizer(tokenizer)
    (example,), report = encode_conversations([conversation], PromptTemplate(), spy, seq_len=8)
    # The tokens are those of the whole text, truncated from the prompt's start.
    pieces = conversation_pieces(PromptTemplate(), [conversation])
    ((ids, mask),) = encode_pieces(pieces, tokenizer, tokenizer.end_token_id)
    np.testing.assert_array_equal(example.token_ids, ids[-9:])
    np.testing.assert_array_equal(example.response_mask, mask[-9:])
    assert report["truncated_examples"] == 1 and report["cut_characters"] > 190_000
    # A response too long to keep whole is refused, as before; so is any long example with --truncate refuse.
    with pytest.raises(DataError, match="response on f.jsonl:4 is at least .* too long for --seq-len 8"):
        encode_conversations([Conversation([("a", prompt)], source="f.jsonl:4")], PromptTemplate(), spy, seq_len=8)
    with pytest.raises(DataError, match=r"1 example\(s\) do not fit --seq-len 8.*f.jsonl:3 \(at least"):
        encode_conversations([conversation], PromptTemplate(), spy, seq_len=8, truncate="refuse")
    # The tokenizer never saw more than a bounded slice of the text.
    assert spy.longest <= CHARACTERS_PER_TOKEN_BOUND * 9
