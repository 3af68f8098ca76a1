"""LoRA on klm's and keras-hub's backbones, merging adapters, parameter counts, a classifier head.

`apply_lora(model, rank, alpha)` freezes the backbone and adds low-rank
adapters (Keras's own `enable_lora(rank, lora_alpha=...)` on `Dense` /
`EinsumDense` layers: `W x + (alpha / rank) * B(A x)`, `B` starting at zero so
the model starts unchanged) to the chosen projections. Only the adapters and
whatever sits outside the backbone (a classifier head) stay trainable.

Targets (`targets=`):

- `"attention"` (default): every attention projection. klm's
  `CausalSelfAttention` fuses q, k and v into one `qkv_dense`, so its targets
  are `qkv_dense` (q, k and v together) and `output_dense`; keras-hub's
  attention layers have `query`, `key`, `value` and `attention_output`.
- `"qv"`: keras-hub's default (`Backbone.default_lora_layer_names`: query
  and value only; klm's fused `qkv_dense` for klm backbones).
- `"all"`: attention plus the feed-forward projections
  (`feedforward_intermediate`/`feedforward_output`, Llama's gate too).
- a list of layer names.

Keras saves a LoRA layer's kernel merged (`W + alpha/rank * A B`) and, on
loading, zeroes A and B; `merge_lora` does the same merge in place so that a
model can be exported with plain weights.
"""

from klm.errors import ConfigError

TARGETS = ("attention", "qv", "all")
_KERAS_HUB_ATTENTION = (
    "query",
    "key",
    "value",
    "attention_output",
    "query_dense",
    "key_dense",
    "value_dense",
    "output_dense",
)
_KERAS_HUB_QV = ("query", "value", "query_dense", "value_dense")
_FEEDFORWARD_HINT = "feedforward"


def _backbone(model):
    return getattr(model, "backbone", model)


def _klm_targets(backbone, targets):
    layers = []
    for block in backbone.transformer_layers:
        attention = block.attention
        if targets == "qv":
            layers.append(attention.qkv_dense)
        else:
            layers += [attention.qkv_dense, attention.output_dense]
        if targets == "all":
            layers += [block.feedforward_intermediate, block.feedforward_output]
    return layers


def _keras_hub_targets(backbone, targets):
    layers = []
    for layer in backbone._flatten_layers(include_self=False):
        if not hasattr(layer, "enable_lora") or not layer.weights or _is_embedding(layer):
            continue
        name = layer.name
        if targets == "qv":
            selected = name in _KERAS_HUB_QV
        elif targets == "attention":
            selected = name in _KERAS_HUB_ATTENTION
        elif targets == "all":
            selected = name in _KERAS_HUB_ATTENTION or _FEEDFORWARD_HINT in name
        else:
            selected = name in targets
        if selected:
            layers.append(layer)
    return layers


def _is_embedding(layer):
    import keras

    return isinstance(layer, keras.layers.Embedding)


def lora_target_layers(model, targets="attention"):
    """The layers `apply_lora` would adapt."""
    from klm.models import KlmBackbone

    backbone = _backbone(model)
    if isinstance(targets, str) and targets not in TARGETS:
        raise ConfigError(f"Expected LoRA targets in {TARGETS} or a list of layer names. Received: targets={targets!r}")
    if isinstance(backbone, KlmBackbone):
        if isinstance(targets, str):
            return _klm_targets(backbone, targets)
        return [
            layer
            for layer in backbone._flatten_layers(include_self=False)
            if layer.name in targets and hasattr(layer, "enable_lora")
        ]
    return _keras_hub_targets(backbone, targets)


def apply_lora(model, rank, alpha=None, targets="attention"):
    """Freezes the backbone of `model` and enables LoRA on its target projections.

    Args:
        model: a task (`KlmCausalLM`, `KlmClassifier`, a keras-hub `CausalLM`)
            or a backbone (`KlmBackbone` or any keras-hub `Backbone`).
        rank: int >= 1 (`--lora-rank`).
        alpha: the LoRA scale numerator (`--lora-alpha`; updates are scaled by
            `alpha / rank`); `None` means `alpha = rank` (scale 1), Keras's
            default.
        targets: `"attention"`, `"qv"`, `"all"` or a list of layer names
            (module docstring).

    Returns:
        A dict for the run's config/summary: `rank`, `alpha`, `targets`,
        `layers` (adapted layer paths) and the parameter counts of
        `parameter_counts(model)` (`total`, `trainable`, `non_trainable`)
        plus `lora` (adapter parameters).

    Raises:
        ConfigError: bad rank/alpha/targets, no layer matched, LoRA already on.
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ConfigError(f"Expected --lora-rank to be a positive integer. Received: --lora-rank={rank!r}")
    if alpha is not None and not alpha > 0:
        raise ConfigError(f"Expected --lora-alpha > 0. Received: --lora-alpha={alpha!r}")
    backbone = _backbone(model)
    layers = lora_target_layers(model, targets)
    if not layers:
        raise ConfigError(
            f"No layer of {type(backbone).__name__} matches the LoRA targets. Received: targets={targets!r}"
        )
    if any(getattr(layer, "lora_enabled", False) for layer in layers):
        raise ConfigError("LoRA is already enabled on this model. Received: a model with LoRA layers")
    backbone.trainable = True
    for layer in backbone._flatten_layers(include_self=False):
        layer.trainable = False
    for layer in layers:
        layer.trainable = True
        layer.enable_lora(rank, lora_alpha=alpha)
        bias = getattr(layer, "bias", None)
        if bias is not None:
            bias.trainable = False  # only the adapters train
    counts = parameter_counts(model)
    lora = sum(_size(w) for layer in layers for w in (layer.lora_kernel_a, layer.lora_kernel_b))
    return {
        "rank": rank,
        "alpha": alpha if alpha is not None else rank,
        "targets": targets if isinstance(targets, str) else list(targets),
        "layers": [layer.path for layer in layers],
        **counts,
        "lora": lora,
    }


def _size(variable):
    size = 1
    for dim in variable.shape:
        size *= int(dim)
    return size


def parameter_counts(model):
    """`{"total", "trainable", "non_trainable"}` parameter counts (each variable once)."""
    seen, trainable, total = set(), 0, 0
    for variable in model.weights:
        key = id(variable)
        if key in seen:
            continue
        seen.add(key)
        size = _size(variable)
        total += size
        if variable.trainable:
            trainable += size
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def lora_layers(model):
    """Layers of `model` with LoRA enabled."""
    return [layer for layer in model._flatten_layers(include_self=False) if getattr(layer, "lora_enabled", False)]


def merge_lora(model):
    """Folds every adapter into its kernel in place (`W <- W + alpha/rank * A B`, then `B <- 0`).

    The model computes the same function (exactly, up to float rounding of
    the sum) with plain weights, ready for export; the LoRA variables remain
    (zero update) so the model's structure and `.keras` config are unchanged.

    Returns:
        The number of layers merged.
    """
    from keras import ops

    layers = lora_layers(model)
    for layer in layers:
        if hasattr(layer, "_kernel"):
            merged = ops.convert_to_tensor(layer.kernel)  # the property adds the scaled A @ B
            layer._kernel.assign(ops.cast(merged, layer._kernel.dtype))
            layer.lora_kernel_b.assign(ops.zeros(layer.lora_kernel_b.shape, layer.lora_kernel_b.dtype))
        else:  # Embedding
            merged = ops.convert_to_tensor(layer.embeddings)
            layer._embeddings.assign(ops.cast(merged, layer._embeddings.dtype))
            layer.lora_embeddings_b.assign(ops.zeros(layer.lora_embeddings_b.shape, layer.lora_embeddings_b.dtype))
    return len(layers)


def build_classifier(backbone, num_classes, multi_label=False, pooling="last", dropout=0.1):
    """klm's `KlmClassifier` head on any backbone that maps `{"token_ids", "padding_mask"}` -> `(batch, seq, hidden)`.

    keras-hub's decoder backbones (`GPT2Backbone`, `Llama3Backbone`,
    `Qwen3Backbone`, ...) do, so a pretrained backbone gets klm's pooling and
    head unchanged; with `pooling="last"` the hidden state of the last real
    token (the one that has attended to the whole text) is classified. Use
    `apply_lora(classifier, rank)` afterwards for LoRA fine-tuning (the head
    stays trainable).
    """
    from klm.models import KlmClassifier

    inputs = getattr(backbone, "input", None)
    if not isinstance(inputs, dict) or set(inputs) != {"token_ids", "padding_mask"}:
        raise ConfigError(
            f"Expected a backbone with inputs token_ids and padding_mask. Received: {type(backbone).__name__} "
            f"with inputs {sorted(inputs) if isinstance(inputs, dict) else inputs!r}"
        )
    return KlmClassifier(backbone, num_classes=num_classes, multi_label=multi_label, pooling=pooling, dropout=dropout)
