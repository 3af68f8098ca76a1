"""A synthetic SFT task for tests and the README example: reverse a few letters.

`"reverse: c a d"` -> `"d a c"` over a small alphabet. The response is a
function of the prompt, so a model that ignores the prompt cannot beat the
most frequent response (`prompt_blind_exact_match`), while a tiny
Transformer learns it in a few hundred CPU steps.
"""

import itertools
import json

import numpy as np

LETTERS = "abcdefgh"


def reversal_examples(length=3, letters=LETTERS, seed=0, held_out=48):
    """`(train, held_out)` lists of `{"prompt", "response"}`: disjoint letter sequences."""
    sequences = [list(p) for p in itertools.product(letters, repeat=length)]
    order = np.random.default_rng(seed).permutation(len(sequences))
    records = [
        {"prompt": "reverse: " + " ".join(sequences[i]), "response": " ".join(reversed(sequences[i]))} for i in order
    ]
    return records[held_out:], records[:held_out]


def prompt_blind_exact_match(held_out):
    """The best exact match a model that never sees the prompt can reach: the most frequent response's share."""
    counts = {}
    for record in held_out:
        counts[record["response"]] = counts.get(record["response"], 0) + 1
    return max(counts.values()) / len(held_out)


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return str(path)


# Personal data and secrets for the SFT privacy tests (issue 22, item 6: each reached the word vocabulary of
# `klm finetune --task sft --scrub-privacy`), and distinctive fragments of them, lower-case.
PII = {
    "jane.doe@example.com": ("jane.doe", "example.com"),
    "password=hunter2x": ("hunter2x",),
    "AKIAIOSFODNN7EXAMPLE": ("akiaiosfodnn7example",),
    "4111 1111 1111 1111": ("4111", "1111"),
    "+44 20 7946 0958": ("7946", "0958"),
}
PII_FRAGMENTS = [fragment for fragments in PII.values() for fragment in fragments]


def pii_records():
    """Prompt/response, Alpaca and chat records (with a system message) that hold every item of `PII`."""
    email, password, key, card, phone = PII
    return [
        {"prompt": f"my mail is {email}", "response": f"noted, {password} and key {key}"},
        {"instruction": f"charge card {card}", "input": f"call {phone}", "output": "done"},
        {
            "messages": [
                {"role": "system", "content": f"owner {email}"},
                {"role": "user", "content": f"store {key}"},
                {"role": "assistant", "content": f"stored, call {phone} or pay with {card}"},
            ]
        },
    ]
