"""Tests of the `klm prepare` command (cli/prepare_cmd.py) with click's CliRunner."""

import json

from click.testing import CliRunner

from klm.cli.prepare_cmd import prepare
from klm.data.prepared.reader import load_prepared


def write_corpus(path):
    path.write_text("\n".join(f"The {w} sat on the mat ." for w in ["cat", "dog", "bird", "fish"] * 10) + "\n")
    return path


def invoke(*args):
    return CliRunner().invoke(prepare, [str(a) for a in args] + ["--quiet"], catch_exceptions=False)


def test_prepare_prints_report_and_token_counts(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    result = invoke(
        corpus, "--out", tmp_path / "out", "--valid-fraction", "0.25", "--lowercase", "--dedup", "--seed", "3"
    )
    assert result.exit_code == 0, result.output
    assert "Cleaning report:" in result.output and "dropped_duplicate" in result.output
    assert "train" in result.output and "tokens" in result.output
    manifest = load_prepared(tmp_path / "out").manifest
    assert manifest["cleaning"]["config"]["lowercase"] and manifest["cleaning"]["config"]["deduplicate"]
    assert manifest["cleaning"]["report"]["dropped_duplicate"] == 36
    assert manifest["seed"] == 3 and manifest["valid_fraction"] == 0.25


def test_config_file_and_flags_that_override_it(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    config = tmp_path / "prepare.json"
    config.write_text(
        json.dumps(
            {"tokenizer": "sentencepiece", "vocab-size": 30, "keep_whitespace": True, "out": str(tmp_path / "x")}
        )
    )
    result = invoke(corpus, "--config", config, "--tokenizer", "byte", "--vocab-size", "1", "--out", tmp_path / "out")
    # The byte tokenizer from the command line wins, and then --vocab-size is a bad value.
    assert result.exit_code == 2 and "--vocab-size" in result.output
    config.write_text(json.dumps({"tokenizer": "sentencepiece", "vocab-size": 23, "keep_whitespace": True}))
    result = invoke(corpus, "--config", config, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    manifest = load_prepared(tmp_path / "out").manifest
    assert manifest["tokenizer"]["kind"] == "sentencepiece" and manifest["tokenizer"]["vocabulary_size"] == 23
    assert manifest["cleaning"]["config"]["collapse_whitespace"] is False
    config.write_text(json.dumps({"vocab_sise": 3}))
    result = invoke(corpus, "--config", config, "--out", tmp_path / "other")
    assert result.exit_code == 2 and "vocab_sise" in result.output


def test_bad_values_are_bad_parameters(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    for args, flag in [
        (["--valid-fraction", "1.5"], "--valid-fraction"),
        (["--vocab-size", "0"], "--vocab-size"),
        (["--tokenizer", "bpe"], "--tokenizer"),
        (["--min-length", "-1"], "--min-length"),
        (["--tokenizer", "wordpiece", "--min-freq", "3"], "--min-freq"),
    ]:
        result = invoke(corpus, "--out", tmp_path / "out", *args)
        assert result.exit_code == 2, (args, result.output)
        assert flag in result.output
    assert not (tmp_path / "out").exists()


def test_data_errors_exit_non_zero_without_output(tmp_path):
    result = invoke(tmp_path / "missing.txt", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "Error: Cannot find" in result.output and "missing.txt" in result.output
    corpus = write_corpus(tmp_path / "corpus.txt")
    result = invoke(corpus, "--out", tmp_path / "out", "--vocab-size", "2")
    assert result.exit_code == 2 and "--vocab-size" in result.output
    assert not (tmp_path / "out").exists()
    result = invoke("--out", tmp_path / "out")
    assert result.exit_code == 2 and "SOURCE" in result.output
