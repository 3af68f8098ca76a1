"""Issue 12, data side: `klm prepare` never loses or leaks what a user made.

CLI-level tests with click's CliRunner (cli/prepare_cmd.py).
"""

import collections
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from klm.cli.prepare_cmd import prepare
from klm.data.prepared.reader import load_prepared
from klm.data.testing import to_python
from klm.data.text.privacy_cases import NEGATIVES, POSITIVES

WORDS = "the cat sat on a mat while the dog ran to the park and back again".split()


def write_corpus(path, lines=120, seed=0):
    rng = np.random.default_rng(seed)
    path.write_text("\n".join(" ".join(rng.choice(WORDS, size=7)) + " ." for _ in range(lines)) + "\n")
    return path


def invoke(*args):
    return CliRunner().invoke(prepare, [str(a) for a in args] + ["--quiet"], catch_exceptions=False)


def snapshot(folder):
    """Every file under `folder` with its content, to check nothing changed."""
    result = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, folder)] = f.read()
    return result


def hidden_leftovers(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_overwrite_never_deletes_the_sources_or_user_files(tmp_path, monkeypatch):
    # The example: `klm prepare corp/mycorpus.txt --out corp --overwrite` wiped corp/.
    monkeypatch.chdir(tmp_path)
    corp = tmp_path / "corp"
    corp.mkdir()
    write_corpus(corp / "mycorpus.txt")
    (corp / "README").write_text("x\n")
    before = snapshot(corp)
    result = invoke("corp/mycorpus.txt", "--out", "corp", "--overwrite")
    assert result.exit_code == 2, result.output
    assert "Error: Expected --out to be a folder outside the sources" in result.output
    assert "corp/mycorpus.txt" in result.output and "--out='corp'" in result.output
    assert snapshot(corp) == before
    # Without --overwrite, and with --out an ancestor of the source.
    result = invoke("corp/mycorpus.txt", "--out", ".")
    assert result.exit_code == 2 and "outside the sources" in result.output
    result = invoke("corp/mycorpus.txt", "--out", tmp_path, "--overwrite")
    assert result.exit_code == 2 and "outside the sources" in result.output
    assert snapshot(corp) == before
    assert hidden_leftovers(tmp_path) == []


def test_out_inside_a_source_folder_is_refused(tmp_path):
    corp = tmp_path / "corp"
    corp.mkdir()
    write_corpus(corp / "a.txt")
    result = invoke(corp, "--out", corp / "prepared")
    assert result.exit_code == 2
    assert "inside the source folder" in result.output and "prepared" in result.output
    assert sorted(os.listdir(corp)) == ["a.txt"]
    result = invoke(write_corpus(tmp_path / "b.txt"), "--valid", corp, "--out", corp / "prepared")
    assert result.exit_code == 2 and "--valid" in result.output
    assert sorted(os.listdir(corp)) == ["a.txt"]


def test_overwrite_refuses_a_folder_that_is_not_only_a_prepared_folder(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    result = invoke(corpus, "--out", mine, "--overwrite")
    assert result.exit_code == 2
    assert "no manifest.json" in result.output and "--overwrite never deletes other files" in result.output
    assert (mine / "notes.txt").read_text() == "my notes\n"
    # A manifest.json of something else.
    (mine / "manifest.json").write_text(json.dumps({"name": "my web app"}))
    result = invoke(corpus, "--out", mine, "--overwrite")
    assert result.exit_code == 2 and "not a klm prepare manifest" in result.output
    assert sorted(os.listdir(mine)) == ["manifest.json", "notes.txt"]
    # A real prepared folder to which the user added a file, at the top or in tokenizer/.
    out = tmp_path / "out"
    assert invoke(corpus, "--out", out).exit_code == 0
    (out / "my-results.csv").write_text("a,b\n")
    before = snapshot(out)
    result = invoke(corpus, "--out", out, "--overwrite", "--tokenizer", "byte")
    assert result.exit_code == 2 and "did not write: my-results.csv" in result.output
    assert snapshot(out) == before
    (out / "my-results.csv").unlink()
    (out / "tokenizer" / "extra.txt").write_text("mine")
    result = invoke(corpus, "--out", out, "--overwrite", "--tokenizer", "byte")
    assert result.exit_code == 2 and "tokenizer/extra.txt" in result.output
    (out / "tokenizer" / "extra.txt").unlink()
    # Only prepare's own files: replaced.
    result = invoke(corpus, "--out", out, "--overwrite", "--tokenizer", "byte")
    assert result.exit_code == 0, result.output
    assert load_prepared(out).manifest["tokenizer"]["kind"] == "byte"
    assert hidden_leftovers(tmp_path) == []


def test_published_folders_honour_the_umask(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    for umask, expected in [(0o022, 0o755), (0o002, 0o775), (0o077, 0o700)]:
        old = os.umask(umask)
        try:
            out = tmp_path / f"out-{umask:03o}"
            assert invoke(corpus, "--out", out).exit_code == 0
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(out).st_mode) == expected, oct(os.stat(out).st_mode)
        assert stat.S_IMODE(os.stat(out / "tokenizer").st_mode) == expected
        assert stat.S_IMODE(os.stat(out / "manifest.json").st_mode) == expected & 0o666


def test_no_temp_files_after_a_failure(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    for args in (
        ["--tokenizer", "sentencepiece", "--vocab-size", "5"],  # fails while training the tokenizer
        ["--min-length", "10000"],  # fails after cleaning
    ):
        result = invoke(corpus, "--out", tmp_path / "a" / "b" / "out", *args)
        assert result.exit_code == 2, result.output
        assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]


def test_binary_source_is_refused(tmp_path):
    binary = tmp_path / "data.txt"
    shutil.copyfile(shutil.which("ls") or "/bin/ls", binary)
    result = invoke(binary, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "looks binary" in result.output and "data.txt" in result.output
    assert not (tmp_path / "out").exists()


def test_vocab_size_is_an_upper_bound(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    for kind, extra in [
        ("word", []),
        ("wordpiece", []),
        ("sentencepiece", []),
        ("sentencepiece-bpe", []),
    ]:
        out = tmp_path / f"out-{kind}-{len(extra)}"
        result = CliRunner().invoke(
            prepare, [str(corpus), "--out", str(out), "--tokenizer", kind, "--vocab-size", "32000", "--quiet", *extra]
        )
        assert result.exit_code == 0, result.output + result.stderr
        size = load_prepared(out).manifest["tokenizer"]["vocabulary_size"]
        assert size < 32000
        assert f"note: --vocab-size 32000 is more than the corpus supports; built {size:,} tokens" in result.stderr


def _prepared_text(out):
    """Every file of a prepared folder as lower-case text: text files as they are
    (checksums and the timestamp left out: hex digits are not leaks), the
    tokenizer's vocabulary, and the shards decoded back to tokens and text."""
    data = load_prepared(out)
    texts = list(data.tokenizer.get_vocabulary())
    for root, _, names in os.walk(out):
        for name in names:
            if name.endswith((".bin", ".spm")):  # binary: decoded below, or the vocabulary above
                continue
            with open(os.path.join(root, name), encoding="utf-8") as f:
                texts.append(f.read())
    vocabulary = data.tokenizer.get_vocabulary()
    for split in data.splits.values():
        ids = np.asarray(split.array(), dtype=np.int32)
        texts.append(" ".join(vocabulary[int(i)] for i in ids))
        texts.append(str(to_python(data.tokenizer.detokenize(ids[None, :]))))
    text = "\n".join(texts).lower()
    text = re.sub(r"\b[0-9a-f]{64}\b", "", text)
    return re.sub(r'"created": "[^"]*"', "", text)


def test_scrub_privacy_leaves_no_trace_in_the_prepared_folder(tmp_path):
    corpus = tmp_path / "pii.txt"
    corpus.write_text("\n".join([p[0] for p in POSITIVES] + list(NEGATIVES)) + "\n")
    expected = collections.Counter(kind for _, kind, _ in POSITIVES)
    for kind in ("word", "sentencepiece"):
        out = tmp_path / f"out-{kind}"
        result = CliRunner().invoke(
            prepare, [str(corpus), "--out", str(out), "--scrub-privacy", "--tokenizer", kind, "--vocab-size", "32000"]
        )
        assert result.exit_code == 0, result.output + result.stderr
        report = load_prepared(out).manifest["cleaning"]["report"]
        assert {k: report[f"privacy_{k}"] for k in expected} == dict(expected)
        # Progress lines carry counts and timings (e.g. "686 lines/s"): their digits are masked so a
        # timing cannot look like a leaked number; their words are still checked.
        output = "\n".join(
            re.sub(r"\d", "#", line) if line.lstrip().startswith("[klm]") else line
            for line in result.output.splitlines()
        )
        everything = _prepared_text(out) + "\n" + output.lower()
        for sentence, _, fragments in POSITIVES:
            for fragment in fragments:
                assert fragment not in everything, (kind, fragment, sentence)
        if kind == "word":
            # Placeholders are whole words of the word tokenizer's vocabulary.
            vocabulary = load_prepared(out).tokenizer.get_vocabulary()
            for placeholder in ("<email>", "<url>", "<ip>", "<phone>", "<card>", "<secret>"):
                assert placeholder in vocabulary


def test_sigterm_leaves_no_temp_files(tmp_path):
    corpus = tmp_path / "corpus.txt"
    rng = np.random.default_rng(0)
    line_words = rng.choice(WORDS, size=(200_000, 8))
    corpus.write_text("\n".join(" ".join(words) for words in line_words) + "\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from klm.cli.main import main; main()",
            "prepare",
            str(corpus),
            "--out",
            str(tmp_path / "out"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 120
    while not hidden_leftovers(tmp_path) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "prepare finished before it could be interrupted: use a larger corpus"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0].decode(errors="replace")
    assert proc.returncode != 0, output
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"], output
