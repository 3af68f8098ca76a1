"""klm.data on the real data in ../shared/data (skipped when it is absent).

Set KLM_SHARED_DATA to use another copy. WikiText-2's train split is not in
../shared/data, so, as its README says, valid.txt is the training text and
test.txt the held-out text.
"""

import collections
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from klm.data import (
    LabelVocabulary,
    PrepareConfig,
    basic_english_python,
    classification_dataset,
    get_dataset,
    git_blob_id,
    lm_dataset,
    load_classification_data,
    load_corpus,
    load_prepared,
    prepare,
    train_tokenizer,
)
from klm.errors import DataError

SHARED_DATA = Path(os.environ.get("KLM_SHARED_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
WIKITEXT = SHARED_DATA / "wikitext-2"
SST2 = SHARED_DATA / "sst2"
BLOB_IDS = {
    "valid.txt": "eec944eb2d9e46061cd34a6913528797db6842fc",
    "test.txt": "6f3fc88e4cd88456ea892971f9f12243e8428624",
}

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not WIKITEXT.is_dir(), reason=f"shared data not found at {SHARED_DATA} (set KLM_SHARED_DATA)"),
]


def read_lines(path):
    # Lines as the reference's WikiText iterator yields them: split on "\n" only.
    with open(path, encoding="utf-8", newline="\n") as f:
        return f.read().split("\n")


def reference_vocabulary(lines):
    """torchtext's build_vocab_from_iterator(map(basic_english, lines), specials=["<unk>"])."""
    counter = collections.Counter()
    for line in lines:
        counter.update(basic_english_python(line))
    ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return ["<unk>"] + [word for word, _ in ordered if word != "<unk>"]


@pytest.fixture(scope="module")
def word_tokenizer():
    return train_tokenizer("word", read_lines(WIKITEXT / "valid.txt"))


def test_word_vocabulary_matches_torchtext_order(word_tokenizer):
    expected = reference_vocabulary(read_lines(WIKITEXT / "valid.txt"))
    # klm's vocabulary is the reference's with <pad>, <s>, </s> around <unk>.
    assert word_tokenizer.get_vocabulary()[4:] == expected[1:]


@pytest.mark.parametrize("split", ["valid.txt", "test.txt"])
def test_word_tokens_equal_pure_python_basic_english(word_tokenizer, split):
    lines = read_lines(WIKITEXT / split)
    vocabulary = {word: i for i, word in enumerate(word_tokenizer.get_vocabulary())}
    expected = [
        vocabulary.get(word, word_tokenizer.unk_token_id) for line in lines for word in basic_english_python(line)
    ]
    dataset = (
        tf.data.Dataset.from_tensor_slices(lines)
        .batch(512)
        .map(lambda batch: word_tokenizer.tokenize(batch).flat_values)
    )
    ids = np.concatenate([batch.numpy() for batch in dataset])
    assert len(ids) == len(expected)
    assert ids.tolist() == expected


def test_prepare_reproduces_the_reference_stream(tmp_path, word_tokenizer):
    manifest = prepare(
        PrepareConfig(
            sources=[str(WIKITEXT / "valid.txt")],
            valid=[str(WIKITEXT / "test.txt")],
            out=str(tmp_path / "prepared"),
            verbose=False,
        )
    )
    assert manifest["source_kind"] == "wikitext" and manifest["eos_between_documents"] is False
    data = load_prepared(tmp_path / "prepared")
    vocabulary = data.tokenizer.get_vocabulary()
    assert vocabulary == word_tokenizer.get_vocabulary()
    for split, name in (("train", "valid.txt"), ("valid", "test.txt")):
        words = [word for line in read_lines(WIKITEXT / name) for word in basic_english_python(line)]
        stream = data.splits[split].array()
        assert len(stream) == len(words) == manifest["splits"][split]["tokens"]
        ids = {word: i for i, word in enumerate(vocabulary)}
        assert stream.tolist() == [ids.get(word, 1) for word in words]
    # The reference's batchify(train, 20) + get_batch(i) with bptt 35, batch-major.
    stream = data.splits["train"].array().astype(np.int64)
    nbatch = len(stream) // 20
    columns = stream[: nbatch * 20].reshape(20, -1)
    batches = list(lm_dataset(data.splits["train"], seq_len=35, batch_size=20, mode="contiguous"))
    assert len(batches) == len(range(0, nbatch - 1, 35))  # the reference's loop, short last step included
    for step in (0, 1, len(batches) - 2, len(batches) - 1):
        x, y = batches[step]
        end = min(step * 35 + 35, nbatch - 1)
        np.testing.assert_array_equal(x.numpy(), columns[:, step * 35 : end])
        np.testing.assert_array_equal(y.numpy(), columns[:, step * 35 + 1 : end + 1])
    assert batches[-1][0].shape[1] == (nbatch - 1) % 35 != 0


def test_load_corpus_on_the_shared_folder_explains_the_missing_train_split():
    with pytest.raises(DataError, match="only \\['test', 'valid'\\]"):
        load_corpus(str(WIKITEXT), verbose=False)
    corpus = load_corpus(str(WIKITEXT / "valid.txt"), test=str(WIKITEXT / "test.txt"), verbose=False)
    assert corpus.source_kind == "wikitext" and len(corpus.train) > 200_000


def test_download_integrity_with_the_published_blob_ids(tmp_path):
    assert {name: git_blob_id(WIKITEXT / name) for name in BLOB_IDS} == BLOB_IDS
    mirror = tmp_path / "mirror" / "wikitext-2"
    mirror.mkdir(parents=True)
    for name in BLOB_IDS:
        shutil.copy(WIKITEXT / name, mirror / name)
    folder = get_dataset(
        "wikitext-2",
        base_url=(tmp_path / "mirror").as_uri(),
        cache_dir=str(tmp_path / "cache"),
        splits=("valid", "test"),
    )
    assert git_blob_id(folder / "valid.txt") == BLOB_IDS["valid.txt"]


@pytest.mark.skipif(not SST2.is_dir(), reason=f"SST-2 not found at {SST2}")
def test_sst2_classification_data(word_tokenizer):
    data = load_classification_data(SST2 / "train.txt", valid=SST2 / "dev.txt", test=SST2 / "test.txt")
    assert data.label_vocabulary == LabelVocabulary(["0", "1"])
    assert (len(data.train["texts"]), len(data.valid["texts"]), len(data.test["texts"])) == (6920, 872, 1821)
    assert set(np.unique(data.train["labels"]).tolist()) == {0, 1}
    tokenizer = train_tokenizer("word", data.train["texts"])
    dataset = classification_dataset(data.valid["texts"], data.valid["labels"], tokenizer, seq_len=64, batch_size=32)
    features, labels = next(iter(dataset))
    assert features["token_ids"].shape == (32, 64) and labels.shape == (32,)
