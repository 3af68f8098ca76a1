"""`klm export` of pretrained models.

`--format hf`: Transformers loads the folder with the same logits; HF -> klm -> HF is the identity.
SavedModel (the default) of runs started from a checkpoint: served like klm's own runs, checked in a
TensorFlow-only process against `klm generate` and `klm evaluate`.
"""

import json

import keras
import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from click.testing import CliRunner  # noqa: E402

from klm.errors import ConfigError  # noqa: E402
from klm.export.hf_format import export_hf  # noqa: E402
from klm.pretrained import load_checkpoint, testing  # noqa: E402

BACKEND = keras.backend.backend()
# The SavedModel is always built in a TensorFlow process, whatever backend trained the run. The GPT-2
# LoRA case runs on every backend that runs slow tests (a run trained elsewhere, exported and checked
# against that backend's `klm generate`); the Llama and SFT cases repeat the same export code, so they
# run in the tensorflow suite only, to keep CI time down.
TENSORFLOW_SUITE_ONLY = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="same export path as the GPT-2 LoRA case; run in the tensorflow suite only (tests/run.sh)",
)


def _state_dict(path):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cli_export_hf_round_trip(kind, tmp_path):
    from klm.cli.main import main

    source = testing.cached_hf_checkpoint(kind)
    out = tmp_path / "hf"
    result = CliRunner().invoke(main, ["export", source, str(out), "--format", "hf", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["verified"] and report["max_abs_diff"] <= 1e-4 and report["imported"] == []
    assert report["tokenizer_ids_match"]
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= set(report["files"])
    print(f"{kind}: exported folder logits max abs diff {report['max_abs_diff']:.2e}")
    # HF -> klm -> HF is the identity on weights.
    original, exported = _state_dict(source), _state_dict(out)
    assert sorted(original) == sorted(exported)
    for name in original:
        np.testing.assert_array_equal(exported[name], original[name], err_msg=name)
    # Exporting into an existing folder is refused and leaves it alone.
    result = CliRunner().invoke(main, ["export", source, str(out), "--format", "hf"])
    assert result.exit_code == 2 and "exists" in result.output


def test_lora_adapters_are_merged_into_the_export(tmp_path):
    import keras

    from klm.pretrained import apply_lora

    checkpoint = load_checkpoint(testing.cached_hf_checkpoint("gpt2"))
    apply_lora(checkpoint.causal_lm, rank=2, alpha=4)
    rng = np.random.default_rng(0)
    for variable in checkpoint.causal_lm.weights:
        if "lora_kernel_b" in variable.path:
            variable.assign(rng.normal(0, 0.5, variable.shape).astype("float32"))
    ids = rng.integers(0, checkpoint.backbone.vocabulary_size, (1, 12)).astype("int32")
    ours = keras.ops.convert_to_numpy(checkpoint.causal_lm({"token_ids": ids, "padding_mask": np.ones_like(ids)}))
    result = export_hf(checkpoint.causal_lm, checkpoint.tokenizer, tmp_path / "merged")
    assert result["verified"] and result["max_abs_diff"] <= 1e-4
    np.testing.assert_allclose(testing.hf_logits(str(tmp_path / "merged"), ids), ours, atol=1e-4)


def test_klm_preset_and_unsupported_architecture_are_refused(tmp_path):
    from klm.models import KlmBackbone, KlmCausalLM
    from klm.testing import tiny_backbone_config

    lm = KlmCausalLM(KlmBackbone(**tiny_backbone_config()))
    with pytest.raises(ConfigError, match="klm's own architecture"):
        export_hf(lm, None, tmp_path / "klm")
    qwen3 = load_checkpoint(testing.cached_hf_checkpoint("qwen3"))
    with pytest.raises(ConfigError, match="no Transformers exporter for Qwen3Backbone"):
        export_hf(qwen3.model, qwen3.tokenizer, tmp_path / "qwen3")
    assert not any(tmp_path.iterdir())


# === `klm export RUN OUT` (SavedModel) of runs started from a pretrained checkpoint ===

VERIFY_PROMPTS = ["The history of", "Perplexity is", ""]
SHORT_TEXTS = ["The model", "of words"]  # shorter than the run's --seq-len 16 with the start token


def _invoke(args):
    from klm.cli.main import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


def _served(out, calls):
    from klm.export import call_in_tensorflow_only_process

    check = call_in_tensorflow_only_process(out, calls=calls, load_text_ops=True)
    assert check["blocked_modules_imported"] == [] and check["text_op_libraries"]
    return check["outputs"]


@pytest.mark.slow
@pytest.mark.parametrize("kind, lora", [("gpt2", True), pytest.param("llama", False, marks=TENSORFLOW_SUITE_ONLY)])
def test_savedmodel_export_of_a_run_pretrained_from_a_checkpoint(kind, lora, tmp_path):
    """pretrain --init-from a checkpoint -> SavedModel: greedy text as `klm generate`, scores as `klm evaluate`."""
    from klm.evaluate import evaluate_run
    from klm.generate import generate_text

    text = tmp_path / "text.txt"
    text.write_text(testing.CORPUS * 3, encoding="utf-8")
    run = str(tmp_path / "run")
    result = _invoke(
        [
            "pretrain",
            "--init-from",
            testing.cached_hf_checkpoint(kind),
            "--data",
            str(text),
            "--run-dir",
            run,
            "--batch-size",
            "4",
            "--seq-len",
            "16",
            "--optimizer",
            "adamw",
            "--lr",
            "1e-3",
            "--schedule",
            "constant",
            "--max-steps",
            "3",
            "--verbose",
            "quiet",
            *(["--lora-rank", "2"] if lora else []),
        ]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "serving"
    result = _invoke(["export", run, str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["verified"] and report["path"] == str(out / "1")
    assert report["tokenizer"] == {"gpt2": "GPT2Tokenizer", "llama": "Llama3Tokenizer"}[kind]
    assert report["custom_ops"] == ["RegexSplitWithOffsets"]  # keras-hub's byte-pair split: a tensorflow-text op
    refused = _invoke(["export", run, str(tmp_path / "portable"), "--portable"])
    assert refused.exit_code == 2 and "tensorflow-text" in refused.output

    # Reloaded in a TensorFlow-only process (no klm, no Keras; tensorflow-text kernels only).
    max_new_tokens = 6
    generated, scored = _served(
        out / "1",
        [
            {"signature": "generate", "inputs": {"prompts": VERIFY_PROMPTS, "max_new_tokens": max_new_tokens}},
            {"signature": "score", "inputs": {"texts": SHORT_TEXTS}},
        ],
    )
    checkpoint = load_checkpoint(run)
    expected = [
        generate_text(checkpoint, [prompt], max_new_tokens=max_new_tokens, sampler="greedy")[0]
        for prompt in VERIFY_PROMPTS
    ]  # what `klm generate RUN --sampler greedy` prints after the prompt
    print(f"{kind}: served {generated['generated_text']!r}, klm generate {expected!r}")
    assert generated["generated_text"] == expected
    assert any(expected) and generated["num_generated_tokens"][0] > 0
    # Each text scored as one document starting with the checkpoint's start token, as `klm evaluate` does.
    for i, sentence in enumerate(SHORT_TEXTS):
        data = tmp_path / f"doc{i}.txt"
        data.write_text(sentence, encoding="utf-8")
        metrics = evaluate_run(run, str(data))
        assert scored["num_tokens"][i] == metrics["evaluated_tokens"] < 15
        np.testing.assert_allclose(
            scored["log_likelihood"][i], -metrics["loss"] * metrics["evaluated_tokens"], rtol=1e-4
        )
        np.testing.assert_allclose(scored["perplexity"][i], metrics["perplexity"], rtol=1e-4)


@pytest.mark.slow
@TENSORFLOW_SUITE_ONLY
def test_savedmodel_export_of_an_sft_run_from_a_checkpoint(tmp_path):
    """finetune --task sft --from a checkpoint -> SavedModel: raw prompts answered as `klm generate` answers them."""
    from klm.generate import generate_reply
    from klm.sft.testing import reversal_examples, write_jsonl

    train, held_out = reversal_examples(held_out=4)
    run = str(tmp_path / "sft")
    result = _invoke(
        [
            "finetune",
            "--task",
            "sft",
            "--from",
            testing.cached_hf_checkpoint("gpt2"),
            "--train",
            write_jsonl(tmp_path / "train.jsonl", train[:32]),
            "--run-dir",
            run,
            "--batch-size",
            "8",
            "--seq-len",
            "48",
            "--max-steps",
            "3",
            "--lr",
            "1e-3",
            "--lora-rank",
            "2",
            "--verbose",
            "quiet",
            "--eval-generations",
            "0",
        ]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "serving"
    result = _invoke(["export", run, str(out)])
    assert result.exit_code == 0, result.output
    assert "Verified" in result.output
    prompts = [record["prompt"] for record in held_out[:3]]
    (generated,) = _served(out / "1", [{"signature": "generate", "inputs": {"prompts": prompts, "max_new_tokens": 5}}])
    checkpoint = load_checkpoint(run)
    expected = [generate_reply(checkpoint, prompt, max_new_tokens=5, sampler="greedy") for prompt in prompts]
    print(f"sft: served {generated['generated_text']!r}, klm generate {expected!r}")
    assert generated["generated_text"] == expected
