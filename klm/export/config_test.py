"""Tests of `klm.export.config`: `ExportConfig` checks, the version folder and the `--portable` rule."""

from pathlib import Path

import pytest

from klm.errors import ConfigError
from klm.export import ExportConfig, check_portable, choose_version, export_run


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(version=0), "--version"),
        (dict(version=True), "--version"),
        (dict(version="2"), "--version"),
        (dict(checkpoint="worst"), "--checkpoint"),
        (dict(portable="yes"), "portable"),
        (dict(verify_texts="one text"), "verify_texts"),
        (dict(verify_texts=[]), "verify_texts"),
        (dict(verify_max_new_tokens=0), "verify_max_new_tokens"),
        (dict(tolerance=-1.0), "tolerance"),
        (dict(tolerance=float("nan")), "tolerance"),
        (dict(backend="theano"), "backend"),
        (dict(run_dir=""), "run_dir"),
        (dict(out_dir=None), "out_dir"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    args = dict(run_dir="runs/x", out_dir="serving/x")
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        ExportConfig(**args)


def test_config_normalizes():
    config = ExportConfig(run_dir=Path("runs/x"), out_dir="o", backend="tf", verify_texts=("a", "b"))
    assert config.run_dir == "runs/x" and config.backend == "tensorflow" and config.verify_texts == ["a", "b"]
    with pytest.raises(ConfigError, match="Expected an ExportConfig"):
        export_run({"run_dir": "x"})


def test_choose_version(tmp_path):
    out = tmp_path / "serving"
    assert choose_version(out) == 1
    (out / "1").mkdir(parents=True)
    (out / "7").mkdir()
    (out / "notes").mkdir()
    (out / ".klm-export-8-abc").mkdir()
    assert choose_version(out) == 8
    assert choose_version(out, 3) == 3
    with pytest.raises(ConfigError, match="Version 7 already exists.*--version 8"):
        choose_version(out, 7)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        choose_version(tmp_path / "file")


def test_portable_rule():
    check_portable({"kind": "word"})
    check_portable({"kind": "byte", "config": {"lowercase": False}})
    for metadata in ({"kind": "sentencepiece"}, {"kind": "wordpiece"}):
        with pytest.raises(ConfigError, match="without\n?.*--portable.*tensorflow-text|--tokenizer word"):
            check_portable(metadata)
    with pytest.raises(ConfigError, match="lower-cases"):
        check_portable({"kind": "byte", "config": {"lowercase": True}})


def test_pretrained_runs_keras_hub_tokenizer_is_not_portable():
    from klm.export import tokenizer_kind

    metadata = {"class_name": "GPT2Tokenizer", "registered_name": "keras_hub>GPT2Tokenizer", "config": {}}
    assert tokenizer_kind(metadata) == "GPT2Tokenizer" and tokenizer_kind({"kind": "word"}) == "word"
    with pytest.raises(ConfigError, match="pretrained checkpoint's GPT2Tokenizer.*tensorflow-text"):
        check_portable(metadata)
