"""Subword tokenizer training reads a bounded sample, so prepare's memory stays flat as the corpus grows."""

import random
import tracemalloc

import pytest

from klm.data.tokenizers import training as train_tokenizer_module
from klm.data.tokenizers.training import DocumentSample, train_tokenizer

BUDGET = 256 * 1024  # bytes of sampled text


def synthetic_corpus(megabytes, seed=0):
    """Distinct documents of random words, `megabytes` MB in all (a generator: nothing held)."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 8))) for _ in range(3000)]
    total = 0
    index = 0
    while total < megabytes * 2**20:
        text = f"doc{index} " + " ".join(rng.choice(words) for _ in range(rng.randint(10, 60)))
        total += len(text) + 1
        index += 1
        yield text


@pytest.mark.heavy
def test_sample_is_bounded_uniform_and_deterministic():
    tracemalloc.start()
    sample = DocumentSample([list(synthetic_corpus(8))], max_bytes=BUDGET)
    tracemalloc.stop()
    assert sample.seen_bytes > 7.5 * 2**20 and sample.sampled
    assert 0.9 * BUDGET < sample.bytes <= BUDGET
    assert sum(len(d) for d in sample.documents) == sample.bytes
    # Uniform over the stream: documents from both halves, in stream order.
    indices = [int(d.split(b" ", 1)[0][3:]) for d in sample.documents]
    assert indices == sorted(indices)
    assert min(indices) < sample.seen // 4 and max(indices) > 3 * sample.seen // 4
    again = DocumentSample([list(synthetic_corpus(8))], max_bytes=BUDGET)
    assert again.documents == sample.documents


@pytest.mark.heavy
def test_sample_memory_is_flat_in_corpus_size():
    peaks = []
    for megabytes in (2, 16):
        tracemalloc.start()
        DocumentSample(([text] for text in synthetic_corpus(megabytes)), max_bytes=BUDGET)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # 8x the corpus, about the same peak; both far below the 2-16 MB corpus.
    assert peaks[1] < 1.5 * peaks[0]
    assert peaks[1] < 8 * BUDGET


def test_small_corpus_is_used_whole_in_order():
    texts = ["b a", "", "c d e", "a"]
    sample = DocumentSample([texts], max_bytes=BUDGET)
    assert sample.documents == [b"b a", b"c d e", b"a"] and not sample.sampled and sample.seen == 3


@pytest.mark.parametrize("kind", ["sentencepiece", "wordpiece"])
@pytest.mark.heavy
def test_tokenizer_training_reads_only_the_sample(kind, monkeypatch):
    # A corpus larger than the budget: the trainer must see at most the budget.
    seen = {}
    if kind == "sentencepiece":
        original = train_tokenizer_module._compute_sentence_piece_proto

        def spy(documents, *args):
            seen["bytes"] = sum(len(d) for d in documents)
            return original(documents, *args)

        monkeypatch.setattr(train_tokenizer_module, "_compute_sentence_piece_proto", spy)
    else:
        original = train_tokenizer_module.iter_text_batches

        def counting(texts, batch_size=1024):
            for batch in original(texts, batch_size):
                if isinstance(texts, list):  # the sample, not the corpus stream
                    seen["bytes"] = seen.get("bytes", 0) + sum(len(t) for t in batch)
                yield batch

        monkeypatch.setattr(train_tokenizer_module, "iter_text_batches", counting)
    corpus = synthetic_corpus(3)  # a one-shot stream, larger than the budget
    tokenizer = train_tokenizer(kind, corpus, vocab_size=300, sample_bytes=BUDGET)
    assert tokenizer.vocabulary_size() > 100
    assert 0 < seen["bytes"] <= BUDGET
