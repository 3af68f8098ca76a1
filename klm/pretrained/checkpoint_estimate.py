"""Size, cost and step time of fine-tuning a pretrained checkpoint, before it starts.

`klm estimate --from CKPT` (what `klm finetune --from CKPT` trains: klm's
classifier head on the checkpoint's backbone) and `klm estimate --init-from
CKPT` (what `klm pretrain --init-from CKPT` trains: the causal LM) call
`estimate_checkpoint(config)`; `format_checkpoint_report` prints its report
(it lives in `klm.estimate`, beside the preset report's formatting).

- `checkpoint_dims(backbone)`: the sizes of a keras-hub or klm backbone the
  estimates need (the matmul weights counted from its variables);
- `checkpoint_memory(...)`: weights, gradients, optimizer state and
  activations in MiB under one precision (`PRECISION_COLUMNS` are reported);
- `checkpoint_flops_per_token(dims, seq_len, mode)`: training FLOPs for full
  fine-tuning, LoRA or a frozen backbone.

Only the checkpoint's configuration is read: the model is built inside
`_shapes_only` (variables without memory), so a billion-parameter checkpoint
is counted without loading it. The estimates of klm's own presets and the
helpers both share (`activation_bytes_per_token`, `time_fit`, the report
formatting) are in `klm.estimate`.
"""

import time

from klm import backend as backend_lib
from klm.config import FinetuneConfig
from klm.errors import ConfigError
from klm.estimate import (
    MIB,
    PRECISION_COLUMNS,
    activation_bytes_per_token,
    format_checkpoint_report,  # noqa: F401 - importable from here, beside estimate_checkpoint
    log_to_stderr,
    peak_rss_mib,
    time_fit,
)
from klm.pretrained import apply_lora
from klm.pretrained.checkpoint import causal_lm_class, check_backbone_seq_len, load_backbone
from klm.pretrained.lora import parameter_counts
from klm.tasks import get_task
from klm.training.builders import build_optimizer, build_optimizer_state
from klm.training.session import distribution, jit_compile, setup


class _shapes_only:
    """Variables created inside keep only their shape and dtype: no memory, no initializer run.

    `keras.StatelessScope(initialize_variables=False)`; on exit the deferred
    variables are dropped from Keras's list of variables to initialize, so a
    later scope does not allocate them.
    """

    def __enter__(self):
        import keras
        from keras.src.backend.common import global_state

        self._state = global_state
        self._before = list(global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True))
        self._scope = keras.StatelessScope(initialize_variables=False)
        self._scope.__enter__()
        return self

    def __exit__(self, *exc):
        self._scope.__exit__(*exc)
        self._state.set_global_attribute("uninitialized_variables", self._before)


def checkpoint_dims(backbone):
    """The sizes of a keras-hub (or klm) decoder backbone that the estimates need."""
    import keras

    config = backbone.get_config()
    heads = config.get("num_heads") or config.get("num_query_heads")
    hidden = int(config["hidden_dim"])
    names = [layer.name for layer in backbone._flatten_layers(include_self=False)]
    embedding_ids = {
        id(w)
        for layer in backbone._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Embedding)
        for w in layer.weights
    }
    matmul = sum(
        _size(w) for w in backbone.weights if id(w) not in embedding_ids and len(w.shape) >= 2 and "lora" not in w.path
    )
    return {
        "vocabulary_size": int(config["vocabulary_size"]),
        "hidden_dim": hidden,
        "num_layers": int(config["num_layers"]),
        "num_heads": int(heads),
        "num_key_value_heads": int(config.get("num_key_value_heads") or heads),
        "intermediate_dim": int(config["intermediate_dim"]),
        "gated": any("gate" in name or "gating" in name for name in names),
        "dropout": float(config.get("dropout") or 0.0),
        "matmul_parameters": int(matmul),
    }


def _size(variable):
    size = 1
    for dim in variable.shape:
        size *= int(dim)
    return size


def checkpoint_memory(
    total,
    trainable,
    dims,
    batch_size,
    seq_len,
    precision,
    optimizer="adamw",
    grad_accum=1,
    lm_head=True,
    backbone_frozen=False,
):
    """Training memory in MiB of a checkpoint under `precision` (weights, gradients, optimizer, activations).

    - `float32`: 4 bytes per weight, gradient and optimizer slot;
    - `bfloat16` (klm's `--precision bfloat16`: the checkpoint loaded in
      bf16): 2 bytes each, optimizer slots included (Keras keeps them in the
      variable's dtype);
    - `mixed_bfloat16`: float32 variables, gradients and slots, plus the bf16
      copies of the weights the layers compute with.

    Gradients and optimizer state exist for the `trainable` parameters only
    (AdamW: two slots; SGD: none; `grad_accum > 1`: one accumulator). The
    activations are `activation_bytes_per_token` at the compute dtype; with a
    frozen backbone nothing is kept for a backward pass through it, and one
    block's worth is counted as working memory.
    """
    variable_bytes = 2 if precision == "bfloat16" else 4
    compute_bytes = 4 if precision == "float32" else 2
    slots = (2 if optimizer == "adamw" else 0) + (1 if grad_accum > 1 else 0)
    per_token = activation_bytes_per_token(
        dims["vocabulary_size"],
        dims["hidden_dim"],
        1 if backbone_frozen else dims["num_layers"],
        dims["num_heads"],
        dims["intermediate_dim"],
        seq_len,
        compute_bytes=compute_bytes,
        dropout=dims["dropout"],
        lm_head=lm_head,
        gated=dims["gated"],
    )
    memory = {
        "weights": variable_bytes * total,
        "gradients": variable_bytes * trainable,
        "optimizer_state": variable_bytes * trainable * slots,
        "compute_weight_copies": 2 * total if precision.startswith("mixed") else 0,
        "activations": batch_size * seq_len * per_token,
    }
    memory = {f"{k}_mib": v / MIB for k, v in memory.items()}
    memory["total_mib"] = sum(memory.values())
    return memory


def checkpoint_flops_per_token(dims, seq_len, mode, lm_head=True):
    """Training FLOPs per token of a checkpoint (matmuls only, as `flops_per_token`).

    Forward: `2 * N` for the `N` matmul weights (the output projection `V x d`
    included for a causal LM) plus `2 * L * T * d` for causal attention. The
    backward pass costs as much again for the input gradients and again for
    the weight gradients: 6N for full fine-tuning, about 4N with LoRA (frozen
    weights get no gradient; the adapters are negligible), 2N with a frozen
    backbone (no backward pass through it).
    """
    n = dims["matmul_parameters"] + (dims["vocabulary_size"] * dims["hidden_dim"] if lm_head else 0)
    factor = {"full": 6, "lora": 4, "freeze_backbone": 2}[mode]
    return factor * n + factor * dims["num_layers"] * seq_len * dims["hidden_dim"]


def _build_checkpoint_model(config, spec, task, num_classes, dtype, shapes_only):
    """The model `klm finetune --from` / `klm pretrain --init-from` trains, built from the checkpoint's config.

    Returns `(model, source, lora_info)`; `shapes_only` builds it inside
    `_shapes_only` (no weight memory; not trainable).
    """

    scope = _shapes_only() if shapes_only else _nothing()
    with scope:
        backbone, source = load_backbone(spec, dtype=dtype, load_weights=False)
        if get_task(task).has_labels:
            from klm.models import KlmClassifier

            backbone.trainable = not config.freeze_backbone
            model = KlmClassifier(
                backbone,
                num_classes=num_classes,
                multi_label=False,
                pooling=config.pooling,
                dropout=config.head_dropout,
                compile=False,
            )
        else:
            cls = causal_lm_class(backbone, spec)
            model = (
                cls(backbone=backbone, compile=False)
                if cls.__module__.startswith("klm")
                else cls(backbone=backbone, preprocessor=None, compile=False)
            )
        lora = None
        if config.lora_rank:
            lora = apply_lora(model, config.lora_rank, alpha=config.lora_alpha, targets=config.lora_targets)
    return model, source, lora


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def estimate_checkpoint(config, num_classes=2, measure_steps=0, warmup_steps=2, log=log_to_stderr):
    """Parameters, memory and (optionally) step time of fine-tuning a pretrained checkpoint.

    `config` is what the training command would run: a `FinetuneConfig`
    (`klm finetune --from CKPT`: klm's classifier head on the checkpoint's
    backbone, `freeze_backbone`) or a `PretrainConfig` with `init_from`
    (`klm pretrain --init-from CKPT`: the causal LM); both take `lora_rank`,
    `lora_alpha`, `lora_targets`. The checkpoint is resolved like
    `klm.pretrained.load_checkpoint` (same names, same `CheckpointError`s),
    but only its configuration is read (`config.json`; for `hf://` and
    keras-hub presets the only file downloaded) and the model is built from
    it without weights: the counts cost no weight memory. With
    `measure_steps > 0` the model is built again with random weights (the
    checkpoint's are never read), compiled as the training command compiles
    it, and `model.fit` is timed on random token ids of the batch shape.

    Returns:
        A dict with `checkpoint` (the source), `task`, `mode` (`full`, `lora`
        or `freeze_backbone`), `parameters` (`total`, `trainable`,
        `non_trainable`, `backbone`, `head`, `lora`), `dims`,
        `flops_per_token`, `memory_mib` (per precision in
        `PRECISION_COLUMNS`), `measured` (or `None`) and the settings.

    Example:
    ```python
    from klm.config import FinetuneConfig
    from klm.pretrained.checkpoint_estimate import estimate_checkpoint, format_checkpoint_report
    config = FinetuneConfig(from_run="hf://Qwen/Qwen3-0.6B", train="-", lora_rank=8)
    print(format_checkpoint_report(estimate_checkpoint(config)))
    ```
    """

    if measure_steps < 0 or warmup_steps < 1:
        raise ConfigError(
            f"Expected measure_steps >= 0 and warmup_steps >= 1. Received: "
            f"measure_steps={measure_steps}, warmup_steps={warmup_steps}"
        )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"Expected --num-classes >= 2. Received: --num-classes={num_classes!r}")
    if isinstance(config, FinetuneConfig):
        task, spec, command = "classifier", config.from_run, "klm finetune --from"
        if spec in (None, "", "none"):
            raise ConfigError(f"Expected --from CHECKPOINT. Received: --from={spec!r}")
    else:
        task, spec, command = "causal_lm", config.init_from, "klm pretrain --init-from"
        if not spec:
            raise ConfigError("Expected --init-from CHECKPOINT. Received: --init-from=None")
    # As in `klm finetune`, --lora-rank overrides --freeze-backbone (`apply_lora` unfreezes the adapted layers).
    frozen = get_task(task).has_labels and config.freeze_backbone and not config.lora_rank
    mode = "lora" if config.lora_rank else "freeze_backbone" if frozen else "full"
    backend, keras = setup(config)
    dtype = "bfloat16" if config.precision == "bfloat16" else None  # as klm.train._load_checkpoint

    model, source, lora = _build_checkpoint_model(config, spec, task, num_classes, dtype, shapes_only=True)

    check_backbone_seq_len(model.backbone, config.seq_len, spec)
    counts = parameter_counts(model)
    backbone_total = parameter_counts(model.backbone)["total"] - (lora["lora"] if lora else 0)
    lora_params = lora["lora"] if lora else 0
    dims = checkpoint_dims(model.backbone)
    lm_head = get_task(task).generates
    batch, seq = config.batch_size, config.seq_len
    memory = {
        precision: checkpoint_memory(
            counts["total"],
            counts["trainable"],
            dims,
            batch,
            seq,
            precision,
            config.optimizer,
            config.grad_accum,
            lm_head=lm_head,
            backbone_frozen=frozen,
        )
        for precision in PRECISION_COLUMNS
    }
    fpt = checkpoint_flops_per_token(dims, seq, mode, lm_head=lm_head)
    del model
    report = {
        "checkpoint": source,
        "command": command,
        "task": task,
        "mode": mode,
        "backend": backend,
        "device": backend_lib.accelerator_name(),
        "precision": config.precision,
        "optimizer": config.optimizer,
        "batch_size": batch,
        "seq_len": seq,
        "num_classes": num_classes if get_task(task).has_labels else None,
        "lora": None
        if lora is None
        else {k: lora[k] for k in ("rank", "alpha", "targets")} | {"layers": len(lora["layers"])},
        "parameters": {
            **counts,
            "backbone": backbone_total,
            "head": counts["total"] - backbone_total - lora_params,
            "lora": lora_params,
        },
        "dims": dims,
        "flops_per_token": fpt,
        "flops_per_step": fpt * batch * seq,
        "memory_mib": memory,
        "measured": None,
        "expected_seconds": None,
    }
    if measure_steps == 0:
        return report

    # === A short run of the real training step, on random weights and tokens ===
    import numpy as np
    import tensorflow as tf

    scope, description = distribution(config)
    report["distribution"] = description
    t0 = time.perf_counter()
    with scope:
        model, _, _ = _build_checkpoint_model(config, spec, task, num_classes, dtype, shapes_only=False)
        steps = config.max_steps or 1000  # only shapes the learning-rate schedule
        compile_args = dict(
            optimizer=build_optimizer(config, steps, steps),
            jit_compile=jit_compile(config),
            steps_per_execution=config.steps_per_execution,
        )
        if get_task(task).generates:
            from klm.losses import lm_loss

            compile_args.update(loss=lm_loss(), weighted_metrics=[])
        model.compile(**compile_args)
        model.build({"token_ids": (None, None), "padding_mask": (None, None)})
        build_optimizer_state(model)
    build_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(config.seed)
    token_ids = rng.integers(0, dims["vocabulary_size"], size=(batch, seq), dtype="int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    y = token_ids if get_task(task).generates else rng.integers(0, num_classes, size=(batch,), dtype="int32")
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    log(
        f"klm estimate: timing {warmup_steps} warm-up + {measure_steps} training steps "
        f"({backend}, {mode}, {batch}x{seq}, {config.precision}; random weights and tokens)"
    )
    seconds_per_step, startup, timed = time_fit(
        keras, model, dataset, warmup_steps, measure_steps, config.steps_per_execution
    )
    report["measured"] = {
        "steps": timed,
        "seconds_per_step": seconds_per_step,
        "ms_per_step": 1000 * seconds_per_step,
        "tokens_per_second": batch * seq / seconds_per_step,
        "flops_per_second": fpt * batch * seq / seconds_per_step,
        "startup_seconds": startup,
        "build_seconds": build_seconds,
        "peak_rss_mib": peak_rss_mib(),
    }
    if config.max_steps:
        report["expected_seconds"] = {
            "training": config.max_steps * seconds_per_step,
            "startup": startup + build_seconds,
        }
    return report
