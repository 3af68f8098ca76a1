"""`klm export` end to end, on the Keras backend of this process.

Each backend's pytest process writes its own run folders (so the `.keras`
files come from TensorFlow, JAX or PyTorch), exports them with the CLI (the
export itself runs under TensorFlow in a subprocess), then loads the
SavedModel in a fresh process that can import TensorFlow only and compares
its outputs with the Keras model of this process and with klm's own greedy
generation.
"""

import os

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from klm.cli.main import main
from klm.export import call_in_tensorflow_only_process
from klm.export.testing import LABELS, klm_greedy, make_run
from klm.pretrained.checkpoint import load_run

BACKEND = keras.backend.backend()
TEXTS = ["the cat sat on the mat .", "hello world", "", "a quick brown fox and then a big red dog ran under the log ."]
PROMPTS = ["the cat", "hello world sat on", "", "a"]
MAX_NEW_TOKENS = 7


def invoke(args):
    return CliRunner().invoke(main, ["export", *args], catch_exceptions=False)


def token_ids(tokenizer, text):
    out = tokenizer.tokenize([text, "a"])
    row = out.to_list()[0] if hasattr(out, "to_list") else out[0]
    return [int(i) for i in row]


def lm_scores(model, tokenizer, texts, seq_len):
    """Per-text log-likelihood given a leading end-of-text token, with this backend's model."""
    scores, counts = [], []
    for text in texts:
        ids = token_ids(tokenizer, text)[:seq_len]
        if not ids:
            scores.append(0.0)
            counts.append(0)
            continue
        x = np.asarray([[tokenizer.end_token_id] + ids[:-1]], "int32")
        logits = keras.ops.convert_to_numpy(model({"token_ids": x, "padding_mask": np.ones_like(x)})).astype("float64")
        log_probs = logits[0] - np.log(np.exp(logits[0]).sum(-1, keepdims=True))
        scores.append(float(log_probs[np.arange(len(ids)), ids].sum()))
        counts.append(len(ids))
    return np.asarray(scores), counts


def classifier_probabilities(model, tokenizer, texts, seq_len, multi_label=False):
    rows = []
    for text in texts:
        ids = token_ids(tokenizer, text)[:seq_len]
        x = np.full((1, seq_len), tokenizer.pad_token_id, "int32")
        x[0, : len(ids)] = ids
        mask = (np.arange(seq_len) < len(ids)).astype("int32")[None]
        logits = keras.ops.convert_to_numpy(model({"token_ids": x, "padding_mask": mask})).astype("float64")[0]
        rows.append(1 / (1 + np.exp(-logits)) if multi_label else np.exp(logits) / np.exp(logits).sum())
    return np.asarray(rows)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    path = tmp_path_factory.mktemp(f"export_{BACKEND}") / "lm"
    model, tokenizer = make_run(path, task="causal_lm", tokenizer="word", seq_len=16)
    return path, model, tokenizer


@pytest.mark.smoke
@pytest.mark.heavy
def test_lm_export_portable_matches_keras_and_klm_generate(lm, tmp_path):
    run_dir, model, tokenizer = lm
    out = tmp_path / "serving" / "lm"
    result = invoke([str(run_dir), str(out), "--portable", "--backend", BACKEND])
    assert result.exit_code == 0, result.output
    assert (out / "1" / "saved_model.pb").is_file() and (out / "1" / "variables").is_dir()
    assert sorted(os.listdir(out)) == ["1"]  # no temporary folder left behind
    for text in (
        "signature_def['generate_top_k']",
        "inputs['max_new_tokens'] tensor_info:",
        "Verified",
        f"--model_base_path={out}",
    ):
        assert text in result.output

    # A process that can import TensorFlow only (no tensorflow-text, no Keras, no klm).
    greedy_call = {"prompts": PROMPTS, "max_new_tokens": MAX_NEW_TOKENS}
    check = call_in_tensorflow_only_process(
        out / "1",
        calls=[
            {"signature": "serving_default", "inputs": {"texts": TEXTS}},
            {"signature": "score", "inputs": {"texts": TEXTS}},
            {"signature": "generate", "inputs": greedy_call},
            {"signature": "generate_top_k", "inputs": dict(greedy_call, top_k=4, temperature=0.8, seed=11)},
        ],
        load_text_ops=False,
    )
    assert check["blocked_modules_imported"] == [] and check["text_op_libraries"] == []
    assert check["custom_ops"] == [] and not [op for op in check["ops"] if op.startswith("Xla")]
    assert set(check["loaded_signatures"]) == {"serving_default", "score", "generate", "generate_top_k"}
    default, score, greedy, sampled = check["outputs"]
    expected, counts = lm_scores(model, tokenizer, TEXTS, seq_len=16)
    for outputs in (default, score):
        np.testing.assert_allclose(outputs["log_likelihood"], expected, atol=1e-4)
        assert outputs["num_tokens"] == counts
        np.testing.assert_allclose(outputs["perplexity"], np.exp(-expected / np.maximum(counts, 1)), rtol=1e-4)
    # Greedy decoding in the graph == klm's own greedy generation on this backend.
    assert greedy["generated_text"] == klm_greedy(load_run(run_dir), PROMPTS, MAX_NEW_TOKENS)
    assert all(0 <= n <= MAX_NEW_TOKENS for n in sampled["num_generated_tokens"])

    # OUT already holds version 1: the next export is version 2; an explicit existing version fails.
    result = invoke([str(run_dir), str(out), "--no-verify"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["1", "2"]
    result = invoke([str(run_dir), str(out), "--version", "2"])
    assert result.exit_code == 2 and "Version 2 already exists" in result.output
    assert sorted(os.listdir(out)) == ["1", "2"]


def test_classifier_export_with_tensorflow_text_tokenizer(tmp_path):
    run_dir = tmp_path / "classifier"
    model, tokenizer = make_run(run_dir, task="classifier", tokenizer="sentencepiece", seq_len=12)
    out = tmp_path / "serving"

    result = invoke([str(run_dir), str(out), "--portable"])
    assert result.exit_code == 2 and "sentencepiece tokenizer" in result.output
    assert "without --portable" in result.output
    assert not out.exists()

    result = invoke([str(run_dir), str(out), "--version", "3"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["3"]
    assert "SentencepieceOp" in result.output  # named as a custom op

    check = call_in_tensorflow_only_process(
        out / "3", calls=[{"signature": "serving_default", "inputs": {"texts": TEXTS}}], load_text_ops=True
    )
    assert check["blocked_modules_imported"] == [] and check["text_op_libraries"]
    outputs = check["outputs"][0]
    expected = classifier_probabilities(model, tokenizer, TEXTS, seq_len=12)
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-4)
    assert outputs["label_id"] == np.argmax(expected, axis=-1).tolist()
    assert outputs["label"] == [LABELS[i] for i in outputs["label_id"]]

    # Without the tensorflow-text kernels the graph does not load: the check names the ops.
    with pytest.raises(Exception, match="SentencepieceOp"):
        call_in_tensorflow_only_process(out / "3", load_text_ops=False)


@pytest.mark.smoke
def test_bad_inputs_give_clear_errors_and_write_nothing(lm, tmp_path):
    run_dir, _, _ = lm
    out = tmp_path / "out"
    result = invoke([str(tmp_path / "missing"), str(out)])
    assert result.exit_code == 2 and "Run folder does not exist" in result.output
    (tmp_path / "file").write_text("x")
    result = invoke([str(run_dir), str(tmp_path / "file")])
    assert result.exit_code == 2 and "is a file" in result.output
    result = invoke([str(run_dir), str(out), "--version", "0"])
    assert result.exit_code == 2 and "Expected a version >= 1" in result.output
    result = invoke([str(run_dir), str(out), "--max-new-tokens", "0"])
    assert result.exit_code == 2 and "--max-new-tokens" in result.output
    assert not out.exists()
    assert (tmp_path / "file").read_text() == "x"


def test_help_mentions_every_option():
    result = CliRunner().invoke(main, ["export", "--help"])
    assert result.exit_code == 0
    for option in ("--version", "--portable", "--checkpoint", "--verify", "--max-new-tokens", "--json", "--backend"):
        assert option in result.output
