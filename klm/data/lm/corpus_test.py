import hashlib

import numpy as np
import pytest

from klm.data.downloads import DATASETS_URL_ENV
from klm.data.lm.batches import lm_dataset
from klm.data.lm.corpus import load_corpus
from klm.data.prepared.config import PrepareConfig
from klm.data.prepared.shards import PreparedSplit
from klm.data.prepared.writer import prepare
from klm.errors import ConfigError


def test_text_file_with_valid_fraction(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\n".join(f"line {i} of the text ." for i in range(100)))
    corpus = load_corpus(str(path), valid_fraction=0.1, verbose=False)
    assert corpus.source_kind == "text" and corpus.eos_between_documents
    assert corpus.train.dtype == np.int32 and corpus.test is None
    assert len(corpus.train) + len(corpus.valid) == 100 * 7
    assert corpus.cleaning_report["documents_out"] == 100
    x, y = next(iter(lm_dataset(corpus.train, 5, 2)))
    assert x.shape == (2, 5)


def test_reuse_tokenizer_and_prepared_folder(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("the cat sat\nthe dog sat\n")
    first = load_corpus(str(path), verbose=False)
    (tmp_path / "b.txt").write_text("the bird sat\n")
    second = load_corpus(str(tmp_path / "b.txt"), tokenizer=first.tokenizer, verbose=False)
    assert second.tokenizer is first.tokenizer
    assert second.train.tolist() == [first.tokenizer.token_to_id(w) for w in ["the", "<unk>", "sat", "</s>"]]
    prepare(PrepareConfig(sources=[str(path)], out=str(tmp_path / "prepared"), verbose=False))
    prepared = load_corpus(str(tmp_path / "prepared"))
    assert isinstance(prepared.train, PreparedSplit)
    np.testing.assert_array_equal(prepared.train.array(), first.train)
    with pytest.raises(ConfigError, match="own tokenizer"):
        load_corpus(str(tmp_path / "prepared"), tokenizer=first.tokenizer)


def test_dataset_name_from_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "wikitext-2"
    mirror.mkdir(parents=True)
    texts = {"train.txt": " = A = \n the cat sat . \n", "valid.txt": " the dog . \n", "test.txt": " a cat . \n"}
    for name, text in texts.items():
        (mirror / name).write_text(text)
    monkeypatch.setenv(DATASETS_URL_ENV, (tmp_path / "mirror").as_uri())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    from klm.data import downloads

    hashes = {n: hashlib.sha1(b"blob %d\0" % len(t.encode()) + t.encode()).hexdigest() for n, t in texts.items()}
    monkeypatch.setitem(downloads.DATASETS["wikitext-2"], "hashes", hashes)
    corpus = load_corpus("wikitext-2", verbose=False)
    assert corpus.source_kind == "wikitext" and not corpus.eos_between_documents
    words = [corpus.tokenizer.id_to_token(int(i)) for i in corpus.train]
    assert words == ["=", "a", "=", "the", "cat", "sat", "."]
    assert len(corpus.valid) == 3 and len(corpus.test) == 3
