import numpy as np
import pytest
import tensorflow as tf

from klm.data.testing import to_python
from klm.data.tokenizers import (
    ByteTokenizer,
    SentencePieceTokenizer,
    WordPieceTokenizer,
    WordTokenizer,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)
from klm.errors import ConfigError, DataError

WORDS = "the cat sat on a mat while the dog ran to the park and back again".split()


def corpus(lines=300):
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=8)) + " ." for _ in range(lines)]


def test_word_from_iterable_and_dataset_agree():
    texts = corpus(50)
    from_list = train_tokenizer("word", texts)
    from_dataset = train_tokenizer("word", tf.data.Dataset.from_tensor_slices(texts))
    assert isinstance(from_list, WordTokenizer)
    assert from_list.get_vocabulary() == from_dataset.get_vocabulary()
    assert from_list.vocabulary_size() == 4 + len(set(WORDS)) + 1


def test_word_min_freq_and_vocab_size_limits(capsys):
    texts = ["a a a b b c"]
    assert train_tokenizer("word", texts, min_freq=2).get_vocabulary()[4:] == ["a", "b"]
    assert train_tokenizer("word", texts, vocab_size=5).get_vocabulary()[4:] == ["a"]
    assert train_tokenizer("word", texts, max_vocab=100).vocabulary_size() == 7
    assert "note:" not in capsys.readouterr().err
    # --vocab-size is an upper bound: the largest vocabulary the corpus supports, and a note.
    assert train_tokenizer("word", texts, vocab_size=50).vocabulary_size() == 7
    err = capsys.readouterr().err
    assert "note: --vocab-size 50 is more than the corpus supports; built 7 tokens" in err
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match=r"--vocab-size > 4"):
        train_tokenizer("word", texts, vocab_size=4)


def test_wordpiece_trains_and_checks_size():
    tokenizer = train_tokenizer("wordpiece", corpus(), vocab_size=40)
    assert isinstance(tokenizer, WordPieceTokenizer)
    assert tokenizer.get_vocabulary()[:4] == ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
    assert to_python(tokenizer.detokenize(tokenizer.tokenize(["the cat sat ."]))) == ["the cat sat ."]
    big = train_tokenizer("wordpiece", corpus(), vocab_size=5000)
    assert 40 <= big.vocabulary_size() < 5000


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_trains_and_checks_size(model_type):
    tokenizer = train_tokenizer("sentencepiece", corpus(), vocab_size=25, sentencepiece_model_type=model_type)
    assert isinstance(tokenizer, SentencePieceTokenizer)
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.start_token_id, tokenizer.end_token_id) == (
        0,
        1,
        2,
        3,
    )
    assert tokenizer.vocabulary_size() == 25
    assert to_python(tokenizer.detokenize(tokenizer.tokenize(["the cat sat ."]))) == ["the cat sat ."]
    big = train_tokenizer("sentencepiece", corpus(), vocab_size=5000, sentencepiece_model_type=model_type)
    assert 25 <= big.vocabulary_size() < 5000
    # A one-shot iterator is read again for the retry.
    again = train_tokenizer("sentencepiece", iter(corpus()), vocab_size=5000, sentencepiece_model_type=model_type)
    assert again.vocabulary_size() == big.vocabulary_size()
    with pytest.raises(ConfigError, match=r"--vocab-size >= \d+"):
        train_tokenizer("sentencepiece", corpus(), vocab_size=8, sentencepiece_model_type=model_type)


def test_byte_and_argument_errors():
    assert isinstance(train_tokenizer("byte", []), ByteTokenizer)
    with pytest.raises(ConfigError, match="--vocab-size"):
        train_tokenizer("byte", [], vocab_size=10)
    with pytest.raises(ConfigError, match="--tokenizer"):
        train_tokenizer("bpe", ["x"])
    with pytest.raises(ConfigError, match="--min-freq"):
        train_tokenizer("wordpiece", ["x"], min_freq=2)
    with pytest.raises(DataError, match="single string"):
        train_tokenizer("word", "just one string")


@pytest.mark.parametrize("kind", ["word", "wordpiece", "sentencepiece"])
def test_empty_corpus(kind):
    with pytest.raises(DataError, match="empty corpus"):
        train_tokenizer(kind, ["", ""], vocab_size=None if kind == "word" else 30)


@pytest.mark.parametrize("kind,vocab_size", [("word", None), ("wordpiece", 40), ("sentencepiece", 25), ("byte", None)])
def test_save_and_load(tmp_path, kind, vocab_size):
    tokenizer = train_tokenizer(kind, corpus(), vocab_size=vocab_size)
    save_tokenizer(tokenizer, str(tmp_path / "tok"))
    restored = load_tokenizer(str(tmp_path / "tok"))
    assert type(restored) is type(tokenizer)
    assert restored.vocabulary_size() == tokenizer.vocabulary_size()
    assert restored.end_token_id == tokenizer.end_token_id and restored.pad_token_id == tokenizer.pad_token_id
    texts = ["the cat sat on a mat .", "park"]
    assert to_python(restored.tokenize(texts)) == to_python(tokenizer.tokenize(texts))


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="tokenizer.json"):
        load_tokenizer(str(tmp_path))
    tokenizer = train_tokenizer("word", ["a b"])
    save_tokenizer(tokenizer, str(tmp_path / "tok"))
    (tmp_path / "tok" / "vocabulary.txt").unlink()
    with pytest.raises(DataError, match="vocabulary.txt"):
        load_tokenizer(str(tmp_path / "tok"))


@pytest.mark.parametrize(
    "kind,extra",
    [("word", {}), ("wordpiece", {}), ("sentencepiece", {}), ("sentencepiece", {"sentencepiece_model_type": "bpe"})],
)
def test_vocab_size_is_an_upper_bound_for_every_kind(capsys, kind, extra):
    tokenizer = train_tokenizer(kind, corpus(), vocab_size=32000, **extra)
    built = tokenizer.vocabulary_size()
    assert built < 32000
    assert (
        f"note: --vocab-size 32000 is more than the corpus supports; built {built:,} tokens" in capsys.readouterr().err
    )
