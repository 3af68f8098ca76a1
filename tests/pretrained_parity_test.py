"""klm on Hugging Face checkpoints == Transformers: logits, perplexity, greedy generation.

Tiny random GPT-2 and Llama checkpoints are written by Transformers itself
(`klm.pretrained.testing`), loaded by klm through keras-hub's converters and
compared with Transformers (PyTorch) on the same token ids. Runs under the
backend of $KERAS_BACKEND (the suite runs once per backend).
"""

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from click.testing import CliRunner  # noqa: E402

from klm.pretrained import (  # noqa: E402
    load_checkpoint,
    testing,  # noqa: E402
    token_stream,
)

KINDS = ["gpt2", "llama"]


@pytest.fixture(scope="module", params=KINDS)
def hf_dir(request):
    return testing.cached_hf_checkpoint(request.param)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(testing.CORPUS[:500], encoding="utf-8")
    return path


_LOADED = {}


def _checkpoint(path):
    if path not in _LOADED:
        _LOADED[path] = load_checkpoint(path)
    return _LOADED[path]


def test_logits_match_transformers(hf_dir):
    import keras

    checkpoint = _checkpoint(hf_dir)
    ids = np.random.default_rng(0).integers(0, checkpoint.backbone.vocabulary_size, size=(2, 24)).astype("int32")
    logits = keras.ops.convert_to_numpy(
        checkpoint.causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids)}, training=False)
    )
    reference = testing.hf_logits(hf_dir, ids)
    diff = float(np.abs(logits - reference).max())
    print(f"{checkpoint.source['architecture']} {keras.config.backend()}: max |klm - transformers| logits = {diff:.2e}")
    assert diff <= 1e-4
    assert np.abs(reference).max() > 1.0  # the test is not trivially passing on near-zero logits


def test_evaluate_perplexity_matches_transformers_loss(hf_dir, text_file):
    from klm.cli.main import main

    result = CliRunner().invoke(main, ["evaluate", hf_dir, "--data", str(text_file), "--seq-len", "48", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    checkpoint = _checkpoint(hf_dir)
    tokens = token_stream(checkpoint, text_file)
    # Transformers: loss per window of 48 tokens, weighted by its predictions.
    total = count = 0
    for start in range(0, len(tokens), 48):
        window = tokens[start : start + 48]
        if len(window) > 1:
            total += testing.hf_loss(hf_dir, window) * (len(window) - 1)
            count += len(window) - 1
    reference = total / count
    assert report["evaluated_tokens"] == count and report["tokens"] == len(tokens)
    relative = abs(report["loss"] - reference) / reference
    ppl_relative = abs(report["perplexity"] - np.exp(reference)) / np.exp(reference)
    print(
        f"{checkpoint.source['architecture']}: perplexity {report['perplexity']:.4f} vs {np.exp(reference):.4f} "
        f"(rel {ppl_relative:.1e})"
    )
    assert ppl_relative <= 1e-3 and relative <= 1e-3
    assert report["checkpoint"]["kind"] == "hf_dir" and "perplexity" in report


def test_one_window_equals_transformers_loss(hf_dir, text_file):
    from klm.pretrained import evaluate_checkpoint

    checkpoint = _checkpoint(hf_dir)
    one = text_file.parent / "one.txt"
    one.write_text(testing.CORPUS[:80], encoding="utf-8")
    result = evaluate_checkpoint(checkpoint, one, seq_len=64)
    tokens = token_stream(checkpoint, one)
    assert len(tokens) <= 64
    reference = testing.hf_loss(hf_dir, tokens)
    assert abs(result["loss"] - reference) / reference <= 1e-3


def test_greedy_generation_matches_transformers(hf_dir):
    from klm.generate import generate_ids, make_sampler

    checkpoint = _checkpoint(hf_dir)
    prompt = [int(i) for i in token_stream_of(checkpoint, "The history of the")]
    ours = generate_ids(checkpoint.causal_lm, prompt, 16, make_sampler("greedy"))
    theirs = testing.hf_greedy(hf_dir, prompt, 16)
    print(f"{checkpoint.source['architecture']}: greedy {ours} vs {theirs}")
    assert ours == theirs


def token_stream_of(checkpoint, text):
    ids = np.asarray(checkpoint.tokenizer.tokenize(text)).reshape(-1).tolist()
    start = checkpoint.start_token_id
    return ([start] if start is not None else []) + ids


def test_cli_generate_streams_text(hf_dir):
    from klm.cli.main import main

    result = CliRunner().invoke(
        main, ["generate", hf_dir, "--prompt", "The history", "--sampler", "greedy", "--max-new-tokens", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "The history" in result.output


def test_bfloat16_loading(hf_dir):
    import keras

    checkpoint = load_checkpoint(hf_dir, dtype="bfloat16")
    assert checkpoint.source["dtype"] == "bfloat16"
    assert all(w.dtype == "bfloat16" for w in checkpoint.backbone.weights if "float" in str(w.dtype))
    ids = np.arange(1, 17, dtype="int32")[None]
    logits = keras.ops.convert_to_numpy(
        keras.ops.cast(checkpoint.causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids)}), "float32")
    )
    reference = testing.hf_logits(hf_dir, ids)
    # bfloat16 keeps ~3 significant digits.
    assert np.abs(logits - reference).max() <= 0.1 * max(1.0, np.abs(reference).max())
