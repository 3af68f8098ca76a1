import numpy as np
import pytest

from klm.sft import batching
from klm.sft.conversations import Conversation
from klm.sft.encoding import EncodedExample, encode_conversations
from klm.sft.prompt_template import PromptTemplate


def fake_examples(lengths, prompt=3):
    return [
        EncodedExample(np.arange(4, 4 + n, dtype="int32"), np.arange(n) >= prompt, f"f:{i}")
        for i, n in enumerate(lengths)
    ]


def test_padded_batches_are_bucketed_deterministic_and_weight_free_on_padding():
    examples = fake_examples([5, 9, 17, 6, 30, 7, 8, 12, 5, 21])
    first = batching.padded_batches(examples, 3, pad_id=0, seq_len=32, seed=1, epoch=0)
    assert [len(b[1]) for b in first] == [3, 3, 3, 3]  # the short batch is filled with empty rows
    again = batching.padded_batches(examples, 3, pad_id=0, seq_len=32, seed=1, epoch=0)
    other = batching.padded_batches(examples, 3, pad_id=0, seq_len=32, seed=1, epoch=1)
    for (x1, y1, w1), (x2, y2, w2) in zip(first, again):
        np.testing.assert_array_equal(x1["token_ids"], x2["token_ids"])
    assert [b[0]["token_ids"].tolist() for b in first] != [b[0]["token_ids"].tolist() for b in other]
    seen = []
    for inputs, targets, weights in first:
        length = inputs["token_ids"].shape[1]
        assert length % batching.PAD_MULTIPLE == 0 or length == 32
        assert np.all(weights[inputs["padding_mask"] == 0] == 0)
        for row in range(len(targets)):
            n = int(inputs["padding_mask"][row].sum())
            if n == 0:  # a filler row of the short batch
                assert not weights[row].any()
                continue
            seen.append(n + 1)
            assert weights[row, :n].tolist() == [0.0] * 2 + [1.0] * (n - 2)
    assert sorted(seen) == sorted(len(e.token_ids) for e in examples)


def test_packing_fills_rows_and_keeps_every_example_once():
    examples = fake_examples([5, 9, 17, 6, 30, 7, 8, 12, 5, 21])
    rows = batching.pack_rows(examples, seq_len=32, seed=0)
    assert sorted(i for row in rows for i in row) == list(range(len(examples)))
    assert all(sum(len(examples[i].token_ids) - 1 for i in row) <= 32 for row in rows)
    assert len(rows) < len(examples)
    ((inputs, targets, weights),) = batching.packed_batches(examples, rows, len(rows), 0, 32, seed=0, epoch=0)
    assert inputs["segment_ids"].shape == (len(rows), 32)
    assert np.all(weights[inputs["segment_ids"] == 0] == 0)
    padded = batching.padded_batches(examples, 100, 0, 32)
    assert batching.padding_fraction([(inputs, targets, weights)]) < batching.padding_fraction(padded)


@pytest.fixture(scope="module")
def setup():
    import keras

    from klm.data import train_tokenizer
    from klm.models import KlmCausalLM, backbone_from_preset
    from klm.sft.recipe import sft_loss

    conversations = [
        Conversation([("reverse: a b c", "c b a")]),
        Conversation([("reverse: d e", "e d")]),
        Conversation([("reverse: f g h a", "a h g f")]),
    ]
    tokenizer = train_tokenizer("word", ["user assistant reverse a b c d e f g h"])
    examples, _ = encode_conversations(conversations, PromptTemplate(), tokenizer, seq_len=32)
    keras.utils.set_random_seed(0)
    model = KlmCausalLM(backbone_from_preset("tiny", vocabulary_size=tokenizer.vocabulary_size()))
    model.compile(optimizer="sgd", loss=sft_loss(), weighted_metrics=[])
    return model, examples


def keras_loss(model, batch):
    """The loss `model.fit` optimizes: Keras's compiled loss with the batch's sample weights."""
    return float(model.evaluate(batching.to_dataset([batch]), verbose=0, return_dict=True)["loss"])


def test_prompt_targets_carry_no_loss_unless_train_on_prompt(setup):
    model, examples = setup
    for train_on_prompt in (False, True):
        inputs, targets, weights = batching.padded_batch(examples, 0, 32, train_on_prompt=train_on_prompt)
        base = keras_loss(model, (inputs, targets, weights))
        changed = targets.copy()
        prompt = (weights == 0) & (inputs["padding_mask"] == 1)  # prompt positions (when masked)
        if train_on_prompt:
            prompt = np.zeros_like(prompt)
            for row, example in enumerate(examples):
                prompt[row, : int(np.sum(~example.response_mask)) - 1] = True
        changed[prompt] = (changed[prompt] + 1) % 10
        altered = keras_loss(model, (inputs, changed, weights))
        if train_on_prompt:
            assert abs(altered - base) > 1e-3
        else:
            assert altered == pytest.approx(base, abs=1e-6)
        # The loss is the mean over weighted tokens.
        from klm.sft.evaluation import response_loss

        assert base == pytest.approx(response_loss(model, [(inputs, targets, weights)])[0], rel=1e-5)


def test_packed_and_padded_batches_give_the_same_per_example_loss(setup):
    from klm.sft.evaluation import per_example_losses

    model, examples = setup
    padded = batching.padded_batch(examples, 0, 32)
    packed = batching.packed_batch(examples, [[0, 1, 2]], 0, 32)
    np.testing.assert_allclose(per_example_losses(model, packed), per_example_losses(model, padded), atol=1e-5)
    assert keras_loss(model, packed) == pytest.approx(keras_loss(model, padded), rel=1e-5)
