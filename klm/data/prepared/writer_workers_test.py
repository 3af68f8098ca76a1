"""`prepare` with worker processes (`workers > 1`) writes what one process writes, byte for byte."""

import gzip
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from klm.data.prepared.config import PrepareConfig
from klm.data.prepared.writer import prepare
from klm.data.text import clean_and_tokenize
from klm.errors import ConfigError, DataError

WORDS = "the cat sat on a mat while the dog ran to the park and back again".split()


@pytest.fixture
def small_blocks(monkeypatch):
    """Workers even for tiny inputs, and many small blocks."""
    monkeypatch.setattr(clean_and_tokenize, "CLEAN_WORKERS_MIN_BYTES", 0)
    kinds = ("word", "wordpiece", "sentencepiece", "byte")
    monkeypatch.setattr(clean_and_tokenize, "ENCODE_WORKERS_MIN_BYTES", dict.fromkeys(kinds, 0))
    monkeypatch.setattr(clean_and_tokenize, "BLOCK_BYTES", 256)


def write_sources(folder):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(300):
        line = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 9)))).capitalize() + " ."
        if i % 11 == 0:
            line = "caf\u00e9 \ufb01ne x\u0007y  \u00a0spaced\u2028 line ."  # NFKC, control, whitespace
        if i % 13 == 0:
            line = ""  # dropped: too short
        if i % 17 == 0:
            line = lines[-1] if lines else line  # a duplicate
        lines.append(line)
    text = "\n".join(lines).encode() + b"\n"
    text = text.replace(b"Cat", b"Cat \xff\xfe", 5)  # invalid UTF-8, replaced and counted
    text = text.replace(b"Dog", b"Dog\r", 3)  # a CRLF-like ending inside a line
    (folder / "a.txt").write_bytes(text)
    with gzip.open(folder / "b.txt.gz", "wb") as f:
        f.write(text[: len(text) // 2])  # no final newline
    records = [{"text": "one\ntwo"}, {"text": "one two"}, {"text": "x"}, {"text": "one\ntwo"}] * 20
    (folder / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return [folder / "a.txt", folder / "b.txt.gz", folder / "c.jsonl"]


def folder_contents(folder):
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, folder)] = open(path, "rb").read()
    manifest = json.loads(files.pop("manifest.json"))
    manifest.pop("created")
    manifest["config"].pop("out")
    manifest["config"].pop("verbose")
    return files, manifest


@pytest.mark.parametrize(
    "kind,settings",
    [
        ("word", {"valid_fraction": 0.2, "cleaning": {"deduplicate": True, "lowercase": True}}),
        ("sentencepiece", {"vocab_size": 60, "eos_between_documents": True}),
        ("wordpiece", {"vocab_size": 80, "cleaning": {"deduplicate": True}, "shard_tokens": 700}),
        ("byte", {"valid_fraction": 0.3, "shard_tokens": 500}),
    ],
)
@pytest.mark.heavy
def test_two_workers_write_the_same_folder_as_one(tmp_path, small_blocks, capsys, kind, settings):
    sources = [str(s) for s in write_sources(tmp_path)]
    one = prepare(
        PrepareConfig(sources=sources, out=str(tmp_path / "one"), tokenizer=kind, workers=1, verbose=False, **settings)
    )
    capsys.readouterr()
    prepare(
        PrepareConfig(sources=sources, out=str(tmp_path / "two"), tokenizer=kind, workers=2, verbose=True, **settings)
    )
    err = capsys.readouterr().err
    assert "cleaning in 2 worker processes" in err and "tokenizing in 2 worker processes" in err
    assert "workers" not in one["config"]
    report = one["cleaning"]["report"]
    assert report["invalid_utf8_lines"] > 0 and report["documents_out"] > 0
    files_one, manifest_one = folder_contents(tmp_path / "one")
    files_two, manifest_two = folder_contents(tmp_path / "two")
    assert manifest_two == manifest_one
    assert files_two == files_one
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith(".")) == []


def strict_corpus(tmp_path):
    lines = [f"line {i} of the corpus ." for i in range(1, 400)]
    lines[149] = "line 150 has a bad \xff byte"
    path = tmp_path / "bad.txt"
    path.write_bytes("\n".join(lines).encode("utf-8").replace("\xff".encode(), b"\xff") + b"\n")
    return path


def test_a_strict_utf8_error_in_a_worker_names_the_file_and_line(tmp_path, small_blocks):
    path = strict_corpus(tmp_path)
    messages = []
    for workers in (1, 2):
        with pytest.raises(DataError, match=r"bad.txt, line 150 \(invalid byte at column 20\)") as error:
            prepare(
                PrepareConfig(
                    sources=[str(path)],
                    out=str(tmp_path / "out"),
                    workers=workers,
                    verbose=False,
                    cleaning={"strict_utf8": True},
                )
            )
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert sorted(os.listdir(tmp_path)) == ["bad.txt"]

    from klm.cli.prepare_cmd import prepare as prepare_command

    result = CliRunner().invoke(
        prepare_command, [str(path), "--out", str(tmp_path / "out"), "--strict", "--workers", "2", "--quiet"]
    )
    assert result.exit_code == 2, result.output
    assert messages[0] in " ".join(result.output.split())
    assert sorted(os.listdir(tmp_path)) == ["bad.txt"]


def test_workers_setting():
    assert PrepareConfig(sources=["x"], out="o", workers=3).resolved_workers() == 3
    assert PrepareConfig(sources=["x"], out="o").resolved_workers() == len(os.sched_getaffinity(0))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="--workers"):
            PrepareConfig(sources=["x"], out="o", workers=bad)
