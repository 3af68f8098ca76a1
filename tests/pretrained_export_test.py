"""`klm export RUN OUT --format hf`: Transformers loads the folder with the same logits; HF -> klm -> HF is the identity."""

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from click.testing import CliRunner  # noqa: E402

from klm.errors import ConfigError  # noqa: E402
from klm.pretrained import load_checkpoint, testing  # noqa: E402
from klm.pretrained.hf_export import export_hf  # noqa: E402


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
    report = json.loads(result.output[result.output.index("{"):])
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
