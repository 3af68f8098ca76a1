import numpy as np
import pytest

from klm.errors import ConfigError
from klm.pretrained.lora import apply_lora, build_classifier, merge_lora, parameter_counts


def _klm_lm():
    from klm.models import KlmBackbone, KlmCausalLM
    from klm.testing import tiny_backbone_config

    return KlmCausalLM(KlmBackbone(**tiny_backbone_config()))


def _fit_and_compare(model, x, y, loss):
    import keras

    before = {v.path: keras.ops.convert_to_numpy(v).copy() for v in model.weights}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    after = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    return sorted(p for p in before if not np.array_equal(before[p], after[p]))


def test_klm_backbone_lora_trains_only_adapters_and_merges_exactly():
    import keras

    from klm.testing import token_batch

    lm = _klm_lm()
    full = parameter_counts(lm)
    report = apply_lora(lm, rank=2, alpha=4)
    # 2 blocks x (qkv 16x48 + output 16x16): A (16x2) + B (2x48) and A (16x2) + B (2x16).
    assert report["lora"] == 2 * ((16 * 2 + 2 * 48) + (16 * 2 + 2 * 16))
    assert report["trainable"] == report["lora"]
    assert report["total"] == full["total"] + report["lora"]
    assert [p.split("/")[-1] for p in report["layers"]] == ["qkv", "output", "qkv", "output"]
    x = token_batch(batch_size=8, seq_len=8)
    y = np.roll(x["token_ids"], -1, axis=1)
    changed = _fit_and_compare(lm, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert changed and all("lora_kernel" in p for p in changed)
    assert any(p.endswith("lora_kernel_b") for p in changed)
    before = keras.ops.convert_to_numpy(lm(x, training=False))
    assert merge_lora(lm) == 4
    after = keras.ops.convert_to_numpy(lm(x, training=False))
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_lora_targets_and_errors():
    lm = _klm_lm()
    report = apply_lora(lm, rank=1, targets="all")
    assert len(report["layers"]) == 8
    with pytest.raises(ConfigError, match="already enabled"):
        apply_lora(lm, rank=1, targets="all")
    with pytest.raises(ConfigError, match="lora-rank"):
        apply_lora(_klm_lm(), rank=0)
    with pytest.raises(ConfigError, match="targets"):
        apply_lora(_klm_lm(), rank=2, targets="everything")
    with pytest.raises(ConfigError, match="matches"):
        apply_lora(_klm_lm(), rank=2, targets=["no_such_layer"])


@pytest.mark.heavy
def test_keras_hub_backbone_classifier_with_lora():
    pytest.importorskip("transformers")
    import keras

    from klm.pretrained import load_checkpoint, testing

    checkpoint = load_checkpoint(testing.cached_hf_checkpoint("gpt2"))
    classifier = build_classifier(checkpoint.backbone, num_classes=3, dropout=0.0)
    full = parameter_counts(classifier)
    report = apply_lora(classifier, rank=4, alpha=8)
    head = 32 * 3 + 3
    hidden, heads, head_dim, layers, rank = 32, 2, 16, 2, 4
    # Keras's EinsumDense LoRA: query/key/value A (hidden, heads, rank) + B (rank, head_dim);
    # attention_output A (heads, head_dim, rank) + B (rank, hidden).
    qkv = hidden * heads * rank + rank * head_dim
    output = heads * head_dim * rank + rank * hidden
    assert report["lora"] == layers * (3 * qkv + output)
    assert report["trainable"] == report["lora"] + head
    assert report["total"] == full["total"] + report["lora"]
    print(
        f"GPT-2 tiny classifier: trainable {report['trainable']:,} of {report['total']:,} "
        f"(full fine-tuning: {full['trainable']:,})"
    )
    ids = np.random.default_rng(0).integers(1, 300, (8, 12)).astype("int32")
    x = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    y = np.arange(8) % 3
    changed = _fit_and_compare(classifier, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert {p for p in changed if "lora_kernel" not in p} <= {"logits/kernel", "logits/bias"}
    assert any("lora_kernel_b" in p for p in changed) and "logits/kernel" in changed
    before = keras.ops.convert_to_numpy(classifier(x, training=False))
    merge_lora(classifier)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(classifier(x, training=False)), before, atol=1e-5)


def test_build_classifier_rejects_other_inputs():
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ConfigError, match="token_ids and padding_mask"):
        build_classifier(model, 2)
