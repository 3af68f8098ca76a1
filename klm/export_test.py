"""Tests of `klm.export`: config checks, bad inputs, and in-graph signatures.

The helper `make_run` writes a tiny finished run folder (model, tokenizer,
config, labels, summary) under the Keras backend of the calling process; the
CLI and cross-backend tests in `tests/export_test.py` use it too.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from klm import runs
from klm.errors import ConfigError, RunDirError
from klm.export import (
    ExportConfig,
    ExportError,
    check_portable,
    choose_version,
    export_run,
    tokenizer_metadata,
)

WORDS = "the a cat dog sat ran on under mat log big small red blue and then hello world quick brown fox".split()
LABELS = ["negative", "neutral", "positive"]


def corpus(lines=200, seed=0):
    """Deterministic little sentences over `WORDS` (enough to train any tokenizer kind)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) + " ." for _ in range(lines)]


def make_run(
    path,
    task="causal_lm",
    tokenizer="word",
    multi_label=False,
    seq_len=16,
    position_encoding="learned",
    finished=True,
    seed=0,
):
    """Writes a tiny run folder at `path`, as `klm pretrain`/`finetune` would.

    The weights are drawn with a large scale (0.3) so that the logits of the
    untrained model are well separated: greedy decoding then picks the same
    token on every backend and batch layout.

    Returns:
        The model (under the current Keras backend) and the tokenizer.
    """
    import keras

    from klm import data
    from klm.models import KlmBackbone, KlmCausalLM, KlmClassifier
    from klm.testing import tiny_backbone_config

    subword = {"vocab_size": 36} if tokenizer in ("sentencepiece", "wordpiece") else {}
    tok = data.train_tokenizer(tokenizer, corpus(), **subword)
    backbone = KlmBackbone(
        **tiny_backbone_config(
            vocabulary_size=int(tok.vocabulary_size()),
            max_sequence_length=48,
            position_encoding=position_encoding,
        )
    )
    if task == "causal_lm":
        model = KlmCausalLM(backbone)
    else:
        model = KlmClassifier(backbone, num_classes=len(LABELS), multi_label=multi_label, dropout=0.0)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    data.save_tokenizer(tok, os.path.join(path, runs.TOKENIZER_DIR))
    config = {"task": task, "seq_len": seq_len, "tokenizer": tokenizer, "preset": "tiny",
              "vocabulary_size": int(tok.vocabulary_size()), "backend": keras.backend.backend()}
    if task == "classifier":
        config.update(labels=LABELS, multi_label=multi_label)
        runs.write_json(os.path.join(path, runs.LABELS_FILE), {"labels": LABELS, "multi_label": multi_label})
    runs.write_json(os.path.join(path, runs.CONFIG_FILE), config)
    runs.save_model(model, os.path.join(path, "best.keras"))
    if finished:
        runs.write_json(os.path.join(path, runs.SUMMARY_FILE), {"task": task, "backend": keras.backend.backend()})
    return model, tok


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("export_lib") / "lm"
    make_run(path)
    return path


# === ExportConfig ===


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


# === Versions and output folder ===


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


# === Bad inputs: a clear error and nothing written ===


def _assert_nothing_written(out):
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == ["1"]


def test_missing_run_folder(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RunDirError, match="does not exist"):
        export_run(ExportConfig(run_dir=str(tmp_path / "nope"), out_dir=str(out)))
    assert not out.exists()


def test_not_a_run_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a klm run folder"):
        export_run(ExportConfig(run_dir=str(tmp_path / "empty"), out_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_unfinished_run(tmp_path, lm_run):
    import shutil

    unfinished = tmp_path / "unfinished"
    shutil.copytree(lm_run, unfinished)
    os.remove(unfinished / runs.SUMMARY_FILE)
    with pytest.raises(RunDirError, match="unfinished run"):
        export_run(ExportConfig(run_dir=str(unfinished), out_dir=str(tmp_path / "out")))
    os.remove(unfinished / "best.keras")
    runs.write_json(unfinished / runs.SUMMARY_FILE, {})
    with pytest.raises(RunDirError, match="holds no checkpoint"):
        export_run(ExportConfig(run_dir=str(unfinished), out_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_out_is_a_file_or_version_exists(tmp_path, lm_run):
    out_file = tmp_path / "out.txt"
    out_file.write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file"):
        export_run(ExportConfig(run_dir=str(lm_run), out_dir=str(out_file)))
    assert out_file.read_text() == "not a folder"
    out = tmp_path / "out"
    (out / "1").mkdir(parents=True)
    with pytest.raises(ConfigError, match="Version 1 already exists"):
        export_run(ExportConfig(run_dir=str(lm_run), out_dir=str(out), version=1))
    _assert_nothing_written(out)


def test_portable_needs_word_or_byte_tokenizer(tmp_path, lm_run):
    check_portable({"kind": "word"})
    check_portable({"kind": "byte", "config": {"lowercase": False}})
    for metadata in ({"kind": "sentencepiece"}, {"kind": "wordpiece"}):
        with pytest.raises(ConfigError, match="without\n?.*--portable.*tensorflow-text|--tokenizer word"):
            check_portable(metadata)
    with pytest.raises(ConfigError, match="lower-cases"):
        check_portable({"kind": "byte", "config": {"lowercase": True}})
    # Through export_run: nothing is written.
    import shutil

    run = tmp_path / "sp"
    shutil.copytree(lm_run, run)
    metadata = tokenizer_metadata(run)
    metadata["kind"] = "sentencepiece"
    (run / "tokenizer" / "tokenizer.json").write_text(json.dumps(metadata))
    with pytest.raises(ConfigError, match="sentencepiece tokenizer"):
        export_run(ExportConfig(run_dir=str(run), out_dir=str(tmp_path / "out"), portable=True))
    assert not (tmp_path / "out").exists()


def test_failed_check_removes_the_half_written_version(tmp_path, lm_run, monkeypatch):
    import klm.export as export_lib

    def fake_build(request, scratch, timeout_s):
        os.makedirs(os.path.join(request["path"], "variables"))
        open(os.path.join(request["path"], "saved_model.pb"), "wb").close()
        return {"reference": {}}

    def failing_check(*args, **kwargs):
        raise ExportError("The exported SavedModel does not match the Keras model: (simulated)")

    monkeypatch.setattr(export_lib, "_run_build_worker", fake_build)
    monkeypatch.setattr(export_lib, "call_in_tensorflow_only_process", failing_check)
    new_out = tmp_path / "new" / "serving"
    with pytest.raises(ExportError, match="does not match"):
        export_run(ExportConfig(run_dir=str(lm_run), out_dir=str(new_out)))
    assert not (tmp_path / "new").exists()  # folders it created are removed too
    out = tmp_path / "out"
    (out / "1").mkdir(parents=True)
    with pytest.raises(ExportError):
        export_run(ExportConfig(run_dir=str(lm_run), out_dir=str(out)))
    assert sorted(p.name for p in out.iterdir()) == ["1"]


# === The graph functions, in-process (TensorFlow backend only) ===


def _tensorflow_only():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("builds TF graph functions in-process (tests/export_test.py covers the other backends)")


def test_generate_function_matches_klm_generate_in_process(lm_run):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import generate_function, score_function

    run = runs.load_run(lm_run)
    prompts = ["the cat", "hello world sat on the", "", "a"]
    greedy = tf.function(generate_function(run), autograph=False)
    out = greedy(tf.constant(prompts), tf.constant(6))
    texts = [t.decode() for t in out["generated_text"].numpy()]
    assert texts == klm_greedy(run, prompts, 6)
    assert all(0 <= n <= 6 for n in out["num_generated_tokens"].numpy())
    # max_new_tokens=0 returns empty texts.
    out = greedy(tf.constant(prompts), tf.constant(0))
    assert [t.decode() for t in out["generated_text"].numpy()] == [""] * 4
    # top_k=1 is greedy; a seed makes sampling repeatable.
    sample = tf.function(generate_function(run, sampling=True), autograph=False)
    args = (tf.constant(prompts), tf.constant(6))
    top1 = sample(*args, tf.constant(1), tf.constant(1.0), tf.constant(3))
    assert [t.decode() for t in top1["generated_text"].numpy()] == texts
    a = sample(*args, tf.constant(8), tf.constant(1.5), tf.constant(3))["generated_text"].numpy().tolist()
    b = sample(*args, tf.constant(8), tf.constant(1.5), tf.constant(3))["generated_text"].numpy().tolist()
    assert a == b
    # Scores against the one-text-at-a-time reference.
    texts = ["the cat sat on the mat .", "", "hello"]
    scores = tf.function(score_function(run), autograph=False)(tf.constant(texts))
    ref = keras_reference_scores(run, texts)
    np.testing.assert_allclose(scores["log_likelihood"].numpy(), ref["log_likelihood"], atol=1e-4)
    assert scores["num_tokens"].numpy().tolist() == ref["num_tokens"]


def klm_greedy(run, prompts, max_new_tokens):
    """klm's own greedy generation (`klm generate --sampler greedy`), one prompt at a time."""
    from klm.generate import generate_text

    return [generate_text(run, [p], max_new_tokens=max_new_tokens, sampler="greedy")[0] for p in prompts]


def keras_reference_scores(run, texts):
    from klm.export import keras_reference

    out = keras_reference(run, texts, ["a"], 1)
    return {"log_likelihood": out["log_likelihood"], "num_tokens": out["num_tokens"]}


def test_learned_positions_limit_is_checked_in_graph(lm_run):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import generate_function

    run = runs.load_run(lm_run)
    greedy = tf.function(generate_function(run), autograph=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="positions of the model"):
        greedy(tf.constant(["the cat"]), tf.constant(100))


@pytest.mark.parametrize("multi_label", [False, True])
def test_classify_function_matches_keras_in_process(tmp_path, multi_label):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import classify_function, keras_reference

    make_run(tmp_path / "cls", task="classifier", multi_label=multi_label, seq_len=6)
    run = runs.load_run(tmp_path / "cls")
    texts = ["the cat sat on the mat and then a dog ran", "hello", "zebra unknown words"]
    out = tf.function(classify_function(run), autograph=False)(tf.constant(texts))
    expected = np.asarray(keras_reference(run, texts, [], 0)["probabilities"])
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    if not multi_label:
        np.testing.assert_allclose(expected.sum(-1), 1.0, atol=1e-6)
    assert out["label_id"].numpy().tolist() == np.argmax(expected, -1).tolist()
    assert [label.decode() for label in out["label"].numpy()] == [LABELS[i] for i in np.argmax(expected, -1)]


@pytest.mark.parametrize("position_encoding", ["rotary", "sinusoidal"])
def test_generate_function_with_other_position_encodings(tmp_path, position_encoding):
    _tensorflow_only()
    import tensorflow as tf

    from klm.export import generate_function

    make_run(tmp_path / "lm", position_encoding=position_encoding)
    run = runs.load_run(tmp_path / "lm")
    prompts = ["the cat", "hello world sat on the"]
    out = tf.function(generate_function(run), autograph=False)(tf.constant(prompts), tf.constant(5))
    assert [t.decode() for t in out["generated_text"].numpy()] == klm_greedy(run, prompts, 5)
