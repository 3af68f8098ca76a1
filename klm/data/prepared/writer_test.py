import json
import os

import numpy as np
import pytest

from klm.data.prepared.config import PrepareConfig
from klm.data.prepared.reader import load_prepared
from klm.data.prepared.writer import format_summary, prepare
from klm.data.testing import to_python
from klm.errors import ConfigError, DataError

WORDS = "the cat sat on a mat while the dog ran to the park and back again".split()


def write_corpus(path, lines=200, seed=0):
    rng = np.random.default_rng(seed)
    text = "\n".join(" ".join(rng.choice(WORDS, size=6)).capitalize() + " ." for _ in range(lines))
    path.write_text(text + "\n\n")
    return path


def run(tmp_path, sources, **kwargs):
    kwargs.setdefault("out", str(tmp_path / "out"))
    kwargs.setdefault("verbose", False)
    return prepare(PrepareConfig(sources=[str(s) for s in sources], **kwargs))


def leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_word_prepare_writes_manifest_shards_and_tokenizer(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    manifest = run(tmp_path, [corpus], valid_fraction=0.2, seed=1)
    out = tmp_path / "out"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert sorted(os.listdir(out)) == ["manifest.json", "tokenizer", "train-00000.bin", "valid-00000.bin"]
    assert manifest["source_kind"] == "text" and manifest["eos_between_documents"] is True
    assert manifest["token_dtype"] == "uint16"
    assert manifest["tokenizer"]["special_token_ids"] == {"pad": 0, "unk": 1, "start": 2, "end": 3}
    report = manifest["cleaning"]["report"]
    assert report["documents_in"] == 201 and report["dropped_too_short"] == 1
    splits = manifest["splits"]
    assert splits["train"]["documents"] + splits["valid"]["documents"] == 200
    assert 0 < splits["valid"]["documents"] < 100
    data = load_prepared(out)
    train = data.splits["train"].array()
    assert len(train) == splits["train"]["tokens"]
    # 7 tokens per line (6 words and "."), then the end-of-text id.
    assert (train == 3).sum() == splits["train"]["documents"]
    assert train[7] == 3 and data.tokenizer.id_to_token(int(train[0])) in WORDS
    assert "Cleaning report" in format_summary(manifest)
    assert leftovers(tmp_path) == []


def test_valid_fraction_is_deterministic(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    first = run(tmp_path, [corpus], out=str(tmp_path / "a"), valid_fraction=0.3, seed=5)
    second = run(tmp_path, [corpus], out=str(tmp_path / "b"), valid_fraction=0.3, seed=5)
    other = run(tmp_path, [corpus], out=str(tmp_path / "c"), valid_fraction=0.3, seed=6)
    assert first["splits"] == second["splits"]
    assert first["splits"] != other["splits"]


@pytest.mark.parametrize("kind,vocab_size", [("byte", None), ("sentencepiece", 40), ("wordpiece", 80)])
@pytest.mark.heavy
def test_other_tokenizers(tmp_path, kind, vocab_size):
    corpus = write_corpus(tmp_path / "corpus.txt")
    manifest = run(tmp_path, [corpus], tokenizer=kind, vocab_size=vocab_size)
    data = load_prepared(tmp_path / "out")
    tokens = data.splits["train"].array()
    end = data.tokenizer.end_token_id
    first_document = tokens[: int(np.argmax(tokens == end))]
    assert (
        to_python(data.tokenizer.detokenize([first_document.tolist()]))[0].lower()
        == corpus.read_text().split("\n")[0].lower()
    )
    assert manifest["tokenizer"]["kind"] == kind


def test_jsonl_and_csv_sources(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "one two"}\n{"body": "three"}\n')
    (tmp_path / "b.csv").write_text('body,x\n"four, five",1\n')
    manifest = run(tmp_path, [tmp_path / "a.jsonl", tmp_path / "b.csv"], text_field="body", tokenizer="byte")
    assert manifest["source_kind"] == "mixed"
    assert manifest["splits"]["train"]["documents"] == 3
    assert manifest["splits"]["train"]["tokens"] == len("one two") + len("three") + len("four, five") + 3


def test_wikitext_folder_defaults_mirror_the_seed(tmp_path):
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    (folder / "train.txt").write_text(" \n = Title = \n \n The cat\u2011sat . \n")
    (folder / "valid.txt").write_text(" The dog . \n")
    (folder / "test.txt").write_text(" A cat . \n")
    manifest = run(tmp_path, [folder])
    assert manifest["source_kind"] == "wikitext" and manifest["eos_between_documents"] is False
    assert manifest["cleaning"]["config"]["unicode_normalization"] is None
    assert set(manifest["splits"]) == {"train", "valid", "test"}
    data = load_prepared(tmp_path / "out")
    words = [data.tokenizer.id_to_token(int(i)) for i in data.splits["train"].array()]
    assert words == ["=", "title", "=", "the", "cat\u2011sat", "."]
    with_eos = run(tmp_path, [folder], out=str(tmp_path / "eos"), eos_between_documents=True)
    assert with_eos["splits"]["train"]["tokens"] == 8


def test_checksum_and_size_mismatch(tmp_path):
    run(tmp_path, [write_corpus(tmp_path / "corpus.txt")])
    shard = tmp_path / "out" / "train-00000.bin"
    original = shard.read_bytes()
    data = bytearray(original)
    data[10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="Checksum mismatch for .*train-00000.bin"):
        load_prepared(tmp_path / "out")
    load_prepared(tmp_path / "out", verify=False)
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(DataError, match="bytes"):
        load_prepared(tmp_path / "out", verify=False)
    shard.write_bytes(original)
    with open(tmp_path / "out" / "tokenizer" / "vocabulary.txt", "a") as f:
        f.write("extra\n")
    with pytest.raises(DataError, match="Checksum mismatch for .*vocabulary.txt"):
        load_prepared(tmp_path / "out")


def test_several_shards(tmp_path):
    manifest = run(tmp_path, [write_corpus(tmp_path / "corpus.txt")], shard_tokens=300)
    shards = manifest["splits"]["train"]["shards"]
    assert len(shards) == -(-manifest["splits"]["train"]["tokens"] // 300)
    assert all(s["tokens"] == 300 for s in shards[:-1])
    data = load_prepared(tmp_path / "out")
    assert len(data.splits["train"].array()) == manifest["splits"]["train"]["tokens"]


def test_errors_leave_no_output(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    with pytest.raises(ConfigError, match="--vocab-size"):
        run(tmp_path, [corpus], vocab_size=3)
    with pytest.raises(ConfigError, match="--vocab-size"):
        run(tmp_path, [corpus], vocab_size=5, tokenizer="sentencepiece", out=str(tmp_path / "new" / "deeper" / "out"))
    with pytest.raises(DataError, match="0 documents kept"):
        run(tmp_path, [corpus], cleaning={"min_length": 1000})
    (tmp_path / "bad.txt").write_bytes(b"fine\nbad \xff\n")
    with pytest.raises(DataError, match=r"bad.txt, line 2"):
        run(tmp_path, [tmp_path / "bad.txt"], cleaning={"strict_utf8": True})
    with pytest.raises(DataError, match="Cannot find"):
        run(tmp_path, [tmp_path / "missing.txt"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "new").exists()
    assert leftovers(tmp_path) == []


def test_existing_output_and_overwrite(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    run(tmp_path, [corpus])
    with pytest.raises(ConfigError, match="--overwrite"):
        run(tmp_path, [corpus])
    manifest = run(tmp_path, [corpus], overwrite=True, tokenizer="byte")
    assert load_prepared(tmp_path / "out").manifest == manifest
    assert leftovers(tmp_path) == []


def test_reuse_tokenizer(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    first = run(tmp_path, [corpus], out=str(tmp_path / "a"), min_freq=2)
    second = run(
        tmp_path,
        [write_corpus(tmp_path / "other.txt", seed=3)],
        out=str(tmp_path / "b"),
        tokenizer_from=str(tmp_path / "a" / "tokenizer"),
    )
    assert first["tokenizer"] == second["tokenizer"]
    a = load_prepared(tmp_path / "a").tokenizer
    b = load_prepared(tmp_path / "b").tokenizer
    assert a.get_vocabulary() == b.get_vocabulary()


def test_config_validation_names_flags(tmp_path):
    with pytest.raises(ConfigError, match="--valid-fraction"):
        PrepareConfig(sources=["x"], out="o", valid_fraction=1.5)
    with pytest.raises(ConfigError, match="either --valid or --valid-fraction"):
        PrepareConfig(sources=["x"], out="o", valid=["v"], valid_fraction=0.1)
    with pytest.raises(ConfigError, match="--vocab-size"):
        PrepareConfig(sources=["x"], out="o", tokenizer="byte", vocab_size=100)
    with pytest.raises(ConfigError, match="--tokenizer"):
        PrepareConfig(sources=["x"], out="o", tokenizer="bpe")
    with pytest.raises(ConfigError, match="--min-length"):
        PrepareConfig(sources=["x"], out="o", cleaning={"min_length": -3})
    with pytest.raises(ConfigError, match="SOURCE"):
        PrepareConfig(sources=[], out="o")


def test_a_second_prepare_to_the_same_out_stops_at_once(tmp_path):
    # Issue 22, item 5: two prepares to one --out both exited 0 and one result was lost.
    from klm import locks

    corpus = write_corpus(tmp_path / "corpus.txt", lines=40)
    lock_path = tmp_path / ".out.klm-prepare.lock"
    fd = locks.acquire(str(lock_path), lambda holder: holder)  # another klm prepare holds --out
    try:
        with pytest.raises(ConfigError, match=r"Another klm prepare \(process pid \d+\) is writing"):
            run(tmp_path, [corpus])
        assert not (tmp_path / "out").exists()
    finally:
        locks.release(fd, str(lock_path))
    run(tmp_path, [corpus])
    assert leftovers(tmp_path) == []  # the lock file is gone with the command


def test_a_file_saved_into_out_while_preparing_is_never_replaced(tmp_path):
    # Item 5: --out was checked only at the start, and a file written meanwhile was deleted at publish.
    from klm.data.prepared import writer

    corpus = write_corpus(tmp_path / "corpus.txt", lines=40)
    out = tmp_path / "out"
    out.mkdir()
    publish = writer._publish

    def user_writes_then_publish(staging, target, config):
        (out / "notes.txt").write_text("written during the prepare")
        return publish(staging, target, config)

    writer._publish = user_writes_then_publish
    try:
        with pytest.raises(ConfigError, match=r"changed while klm prepare ran.*nothing was written"):
            run(tmp_path, [corpus])
    finally:
        writer._publish = publish
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "written during the prepare"
    assert leftovers(tmp_path) == []
