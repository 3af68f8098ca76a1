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


def test_every_option_comes_from_the_config_and_has_help():
    import dataclasses

    import click

    from klm.cli.options import cli_fields
    from klm.config import field_spec
    from klm.data.prepared.config import PrepareConfig
    from klm.data.text.cleaning_config import CleaningConfig

    params = {param.name: param for param in prepare.params if isinstance(param, click.Option)}
    fields = {}
    for cls in (PrepareConfig, CleaningConfig):
        for name in cli_fields(cls):
            default = {f.name: f.default for f in dataclasses.fields(cls)}[name]
            assert params[name].default is None and params[name].help, name
            if default not in (None, False) and "default_help" not in field_spec(cls, name):
                assert str(default) in params[name].help, name
            fields[name] = cls
    # The command's own options, which are not settings of the prepared data.
    assert set(params) - set(fields) == {"config_file", "quiet", "backend"}
    assert all(param.help for param in params.values())
    assert params["valid"].multiple and params["test"].multiple


def test_sentencepiece_bpe_is_the_training_commands_spelling(tmp_path):
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    corpus = write_corpus(tmp_path / "corpus.txt")
    for tokenizer, model_type in (("sentencepiece-bpe", "BPE"), ("sentencepiece", "UNIGRAM")):
        out = tmp_path / tokenizer
        result = invoke(corpus, "--out", out, "--tokenizer", tokenizer, "--vocab-size", "25")
        assert result.exit_code == 0, result.output
        manifest = load_prepared(out).manifest
        assert manifest["tokenizer"]["kind"] == "sentencepiece"
        assert manifest["config"]["tokenizer"] == tokenizer
        proto = sentencepiece.SentencePieceProcessor(model_file=str(out / "tokenizer" / "vocabulary.spm"))
        spec = sentencepiece_model_pb2.ModelProto.FromString(proto.serialized_model_proto())
        assert spec.trainer_spec.ModelType.Name(spec.trainer_spec.model_type) == model_type
    result = invoke(corpus, "--out", tmp_path / "old", "--tokenizer", "sentencepiece", "--sentencepiece-type", "bpe")
    assert result.exit_code == 2 and "--sentencepiece-type" in result.output


def test_cleaning_switches_and_their_config_file_spellings(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt")
    result = invoke(corpus, "--out", tmp_path / "a", "--keep-control-characters", "--no-eos")
    assert result.exit_code == 0, result.output
    manifest = load_prepared(tmp_path / "a").manifest
    cleaning = manifest["cleaning"]["config"]
    # Only the flags given change the defaults for plain text.
    assert cleaning["remove_control_characters"] is False and cleaning["collapse_whitespace"] is True
    assert cleaning["unicode_normalization"] == "NFKC" and manifest["eos_between_documents"] is False
    config = tmp_path / "prepare.yaml"
    config.write_text("keep_control_characters: 'yes'\ncollapse_whitespace: false\nstrict: true\ndedup: true\n")
    result = invoke(corpus, "--config", config, "--out", tmp_path / "b", "--remove-control-characters")
    assert result.exit_code == 0, result.output
    cleaning = load_prepared(tmp_path / "b").manifest["cleaning"]["config"]
    assert cleaning["remove_control_characters"] is True  # the command line wins over the file
    assert cleaning["collapse_whitespace"] is False and cleaning["strict_utf8"] and cleaning["deduplicate"]
    config.write_text("keep_whitespace: maybe\n")
    result = invoke(corpus, "--config", config, "--out", tmp_path / "c")
    assert result.exit_code == 2 and "keep_whitespace" in result.output and "maybe" in result.output
    assert not (tmp_path / "c").exists()


def test_only_the_cleaning_flags_given_override_the_wikitext_defaults(tmp_path):
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    (folder / "train.txt").write_text(" \n = Title = \n \n The cat\u2011sat . \n")
    (folder / "valid.txt").write_text(" The dog . \n")
    (folder / "test.txt").write_text(" A cat . \n")
    result = invoke(folder, "--out", tmp_path / "a", "--lowercase")
    assert result.exit_code == 0, result.output
    cleaning = load_prepared(tmp_path / "a").manifest["cleaning"]["config"]
    assert cleaning["lowercase"] and cleaning["unicode_normalization"] is None
    assert cleaning["remove_control_characters"] is False and cleaning["collapse_whitespace"] is False
    result = invoke(folder, "--out", tmp_path / "b", "--unicode-normalization", "nfkc", "--collapse-whitespace")
    assert result.exit_code == 0, result.output
    cleaning = load_prepared(tmp_path / "b").manifest["cleaning"]["config"]
    assert cleaning["unicode_normalization"] == "NFKC" and cleaning["collapse_whitespace"] is True
    assert cleaning["remove_control_characters"] is False
    result = invoke(folder, "--out", tmp_path / "c", "--unicode-normalization", "NFX")
    assert result.exit_code == 2 and "Received: --unicode-normalization='NFX'" in result.output
