"""Size, cost and expected duration of a pretraining run, before it starts.

`estimate(config)` takes the `PretrainConfig` that `klm pretrain` would run
and returns a dict (the `klm estimate` command prints it):

- parameter count, training FLOPs per token and per step;
- tokens: in the training data, trained per epoch, in the whole run;
- memory needed: parameters + gradients + optimizer state + activations
  (an analytic estimate, framework overhead excluded), and the peak resident
  memory measured during the short run below;
- expected wall time on this machine, from a short measured run of the real
  training step: the model is built and compiled exactly as `pretrain` does
  and `model.fit` runs a few steps on the real batch shape and data. The
  first steps (compilation) are timed separately as start-up; evaluation is
  estimated at a third of a training step per token, and checkpoints from
  one timed save of the model. Loading and tokenizing the data is timed as
  it happens.

FLOPs use the usual training count (forward + backward = 3 x forward, 2
FLOPs per multiply-add, matmuls only):

    6 * (L * (4*d*d + 2*d*f) + V*d)  +  6 * L * T * d

with `L` layers, width `d`, feed-forward width `f`, vocabulary `V` and
sequence length `T` (the last term: causal attention scores and weighted
sums). It is the formula of `examples/benchmarks/reference_torch.py`; the
seed at vocabulary 12,000 and T = 35 gives 17.36 MFLOP per token.
"""

import math
import statistics
import sys
import time
from pathlib import Path

from klm import backend as backend_lib
from klm import runs
from klm.config import PretrainConfig
from klm.errors import ConfigError

MIB = 2**20


def flops_per_token(vocabulary_size, hidden_dim, num_layers, intermediate_dim, seq_len):
    """Training FLOPs per token (see the module docstring).

    Example:

    >>> round(flops_per_token(12000, 200, 2, 200, 35) / 1e6, 3)
    17.364
    """
    L, d, f, T, V = num_layers, hidden_dim, intermediate_dim, seq_len, vocabulary_size
    return 6.0 * (L * (4 * d * d + 2 * d * f) + V * d) + 6.0 * L * T * d


def activation_bytes_per_token(
    vocabulary_size,
    hidden_dim,
    num_layers,
    num_heads,
    intermediate_dim,
    seq_len,
    compute_bytes=4,
    dropout=0.0,
    lm_head=True,
    gated=False,
):
    """Bytes of activations kept for the backward pass, per token of a batch.

    Per block (Korthikanti et al. 2022, generalised to any feed-forward
    width and dtype): `p * (8d + 2f)` for the tensors the matmuls, norms and
    activation save, `2d` bytes of dropout masks when dropout is on, and the
    `heads x T` attention probabilities (`(2p + 1)` bytes each with attention
    dropout, `p` without). The output layer keeps the logits in the compute
    dtype (`p` bytes per vocabulary entry), a float32 copy for the loss (when
    `p` is 2) and the float32 gradient of the logits (4). Embeddings add
    `2 * p * d`. Framework buffers and workspace are not included.

    `gated=True` (Llama, Qwen, Mistral, Gemma: a gate and an up projection)
    keeps `3f` feed-forward values instead of `2f`; `lm_head=False` (a
    classifier: the head sees one pooled vector per sequence) drops the
    logits term.
    """
    p, d, f, V = compute_bytes, hidden_dim, intermediate_dim, vocabulary_size
    block = p * (8 * d + (3 if gated else 2) * f)
    if dropout > 0:
        block += 2 * d + num_heads * seq_len * (2 * p + 1)
    else:
        block += num_heads * seq_len * p
    head = V * (p + 4 + 4) if p != 4 else V * (4 + 4)
    if not lm_head:
        head = 0
    return num_layers * block + head + 2 * p * d


def memory_estimate(parameters, dims, batch_size, seq_len, precision="float32", optimizer="sgd", grad_accum=1):
    """Training memory in MiB: parameters, gradients, optimizer state, activations.

    Args:
        parameters: number of trainable parameters.
        dims: the backbone config (`preset_config(...)`).
        batch_size, seq_len: the batch shape.
        precision: a klm precision; variables stay float32 under mixed
            precision, the activations (and a compute copy of the weights)
            are 16-bit.
        optimizer: `"sgd"` (no state: klm's SGD has no momentum) or
            `"adamw"` (two float32 moments per parameter).
        grad_accum: gradient accumulation adds one float32 buffer.
    """
    mixed = precision.startswith("mixed")
    p = 2 if mixed else 4
    memory = {
        "parameters": 4 * parameters,
        "gradients": 4 * parameters,
        "optimizer_state": 4 * parameters * ((2 if optimizer == "adamw" else 0) + (1 if grad_accum > 1 else 0)),
        "compute_weight_copies": 2 * parameters if mixed else 0,
        "activations": batch_size
        * seq_len
        * activation_bytes_per_token(
            dims["vocabulary_size"],
            dims["hidden_dim"],
            dims["num_layers"],
            dims["num_heads"],
            dims["intermediate_dim"],
            seq_len,
            compute_bytes=p,
            dropout=dims.get("dropout", 0.0),
        ),
    }
    memory = {f"{k}_mib": v / MIB for k, v in memory.items()}
    memory["total_mib"] = sum(memory.values())
    return memory


class _StepTimer:
    """Callback factory: wall-clock stamps at each executed batch (syncs on the loss)."""

    def __init__(self, keras):
        stamps = self.stamps = []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if not stamps:
                    stamps.append(time.perf_counter())

            def on_train_batch_end(self, batch, logs=None):
                float((logs or {}).get("loss", 0.0))  # waits for the step, like a logger
                stamps.append(time.perf_counter())

        self.callback = Timer()


def _time_fit(keras, model, dataset, warmup_steps, measure_steps, steps_per_execution=1):
    """Runs `model.fit` for the warm-up and timed steps; `(seconds_per_step, startup_seconds, steps timed)`."""
    spe = steps_per_execution
    timer = _StepTimer(keras)
    executions = warmup_steps + math.ceil(measure_steps / spe)
    model.fit(dataset, epochs=1, steps_per_epoch=executions * spe, verbose=0, callbacks=[timer.callback], shuffle=False)
    diffs = [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]
    startup = sum(diffs[:warmup_steps])
    seconds_per_step = statistics.median(diffs[warmup_steps:]) / spe
    # The steady-state cost of the warm-up executions is part of training;
    # start-up is what they took beyond it (compilation, first batches).
    startup = max(0.0, startup - warmup_steps * spe * seconds_per_step)
    return seconds_per_step, startup, len(diffs[warmup_steps:]) * spe


def _peak_rss_mib():
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)


def _log_to_stderr(message):
    print(message, file=sys.stderr, flush=True)


def estimate(config: PretrainConfig, measure_steps=5, warmup_steps=2, log=_log_to_stderr):
    """Estimates the size, memory and wall time of `pretrain(config)`.

    Loads and tokenizes the data as `pretrain` would (a tokenizer saved in an
    existing `config.run_dir` is reused; nothing is written there), builds
    and compiles the model the same way, and times `measure_steps` training
    steps of `model.fit` on the real batches after `warmup_steps` (which
    include compilation). `measure_steps=0` skips the measured run (no time
    estimate then).

    Returns:
        A dict with `parameters`, `flops_per_token`, `flops_per_step`,
        `tokens` (`in_data`, `per_epoch`, `per_step`, `total`, `steps_per_epoch`,
        `total_steps`, `epochs`), `memory_mib`, `measured` and
        `expected_seconds` (`data`, `startup`, `training`, `evaluation`,
        `checkpoints`, `total`), plus the settings they were computed for.

    Example:
    ```python
    from klm.config import PretrainConfig
    from klm.estimate import estimate
    report = estimate(PretrainConfig(data="corpus.txt", preset="tiny"), measure_steps=3)
    print(report["parameters"], report["expected_seconds"]["total"])
    ```
    """
    if measure_steps < 0 or warmup_steps < 1:
        raise ConfigError(
            f"Expected measure_steps >= 0 and warmup_steps >= 1. Received: "
            f"measure_steps={measure_steps}, warmup_steps={warmup_steps}"
        )
    from klm.data.lm.model_inputs import lm_model_inputs, num_tokens
    from klm.train import build_causal_lm, load_pretrain_corpus
    from klm.training.session import distribution, setup

    backend, keras = setup(config)
    from klm import data as data_lib
    from klm.models import preset_config

    # === Data, exactly as pretrain loads it ===
    t0 = time.perf_counter()
    tokenizer = None
    tokenizer_dir = Path(config.run_dir) / runs.TOKENIZER_DIR
    if tokenizer_dir.exists():
        tokenizer = data_lib.load_tokenizer(str(tokenizer_dir))
    corpus = load_pretrain_corpus(config, tokenizer)
    data_seconds = time.perf_counter() - t0
    vocabulary_size = int(corpus.tokenizer.vocabulary_size())
    train_tokens = num_tokens(corpus.train)
    batch, seq = config.batch_size, config.seq_len
    steps_per_epoch = data_lib.lm_steps_per_epoch(train_tokens, seq, batch, mode=config.batching)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"The training text has {train_tokens} tokens, too few for one batch of "
            f"--batch-size {batch} x --seq-len {seq}."
        )
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    tokens_per_step = batch * seq
    tokens_per_epoch = data_lib.lm_tokens_per_epoch(train_tokens, seq, batch, mode=config.batching)

    # === Model, built and compiled by pretrain's own helper ===
    dims = preset_config(config.preset, vocabulary_size, dropout=config.dropout)
    scope, description = distribution(config)
    with scope:
        model = build_causal_lm(config, vocabulary_size, steps_per_epoch, total_steps)
    parameters = int(model.count_params())
    fpt = flops_per_token(vocabulary_size, dims["hidden_dim"], dims["num_layers"], dims["intermediate_dim"], seq)
    memory = memory_estimate(parameters, dims, batch, seq, config.precision, config.optimizer, config.grad_accum)

    report = {
        "backend": backend,
        "device": backend_lib.accelerator_name(),
        "distribution": description,
        "preset": config.preset,
        "precision": config.precision,
        "batch_size": batch,
        "seq_len": seq,
        "vocabulary_size": vocabulary_size,
        "parameters": parameters,
        "flops_per_token": fpt,
        "flops_per_step": fpt * tokens_per_step,
        "tokens": {
            "in_data": train_tokens,
            "per_step": tokens_per_step,
            "per_epoch": tokens_per_epoch,
            "steps_per_epoch": steps_per_epoch,
            "epochs": epochs,
            "total_steps": total_steps,
            "total": (total_steps // steps_per_epoch) * tokens_per_epoch
            + (total_steps % steps_per_epoch) * tokens_per_step,
        },
        "memory_mib": memory,
        "measured": None,
        "expected_seconds": None,
    }
    if measure_steps == 0:
        return report

    # === A short run of the real training step ===
    # One static shape to time: the seed's short last step is left out here.
    train_ds = data_lib.lm_dataset(
        corpus.split("train"), seq, batch, mode=config.batching, seed=config.seed, drop_remainder=True
    )
    train_ds = lm_model_inputs(train_ds).repeat()
    log(
        f"klm estimate: timing {warmup_steps} warm-up + {measure_steps} training steps "
        f"({backend}, {config.preset}, {batch}x{seq}, {config.precision})"
    )
    seconds_per_step, startup, steps = _time_fit(
        keras, model, train_ds, warmup_steps, measure_steps, config.steps_per_execution
    )
    report["measured"] = {
        "steps": steps,
        "seconds_per_step": seconds_per_step,
        "ms_per_step": 1000 * seconds_per_step,
        "tokens_per_second": tokens_per_step / seconds_per_step,
        "flops_per_second": fpt * tokens_per_step / seconds_per_step,
        "startup_seconds": startup,
        "data_seconds": data_seconds,
        "peak_rss_mib": _peak_rss_mib(),
    }

    # Checkpoints: last.keras (and best.keras) after every epoch and at the
    # end, plus the resume backup every `backup_every` steps; one save timed.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="klm-estimate-") as scratch:
        t0 = time.perf_counter()
        runs.save_model(model, Path(scratch) / "probe.keras")
        save_seconds = time.perf_counter() - t0
    saves = 2 * epochs + 2 + total_steps // config.backup_every
    report["measured"]["checkpoint_seconds"] = save_seconds

    # Evaluation: validation after every epoch and once more at the end
    # (the best checkpoint), test once; a forward pass costs about a third of
    # a training step per token.
    eval_tokens = 0
    for split, times in (("valid", epochs + 1), ("test", 1)):
        tokens = corpus.split(split)
        if tokens is not None:
            eval_tokens += times * num_tokens(tokens)
    training = total_steps * seconds_per_step
    evaluation = eval_tokens * seconds_per_step / tokens_per_step / 3
    report["expected_seconds"] = {
        "data": data_seconds,
        "startup": startup,
        "training": training,
        "evaluation": evaluation,
        "checkpoints": saves * save_seconds,
        "total": data_seconds + startup + training + evaluation + saves * save_seconds,
    }
    return report


def _duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def _si(value):
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


def format_report(report):
    """The estimate as the lines `klm estimate` prints."""
    if "checkpoint" in report:
        return format_checkpoint_report(report)
    t, mem = report["tokens"], report["memory_mib"]
    lines = [
        f"klm estimate: preset {report['preset']}, backend {report['backend']} ({report['device']}), "
        f"precision {report['precision']}, batch {report['batch_size']} x {report['seq_len']}",
        f"  parameters        {report['parameters']:,} (vocabulary {report['vocabulary_size']:,})",
        f"  FLOPs per token   {_si(report['flops_per_token'])}FLOP (training: 6N + attention); "
        f"{_si(report['flops_per_step'])}FLOP per step",
        f"  tokens            {t['in_data']:,} in the training data; {t['per_epoch']:,} trained per epoch "
        f"({t['steps_per_epoch']:,} steps); {t['total']:,} in {t['total_steps']:,} steps ({t['epochs']} epoch(s))",
        f"  memory (estimate) parameters {mem['parameters_mib']:.1f} MiB + gradients {mem['gradients_mib']:.1f} MiB"
        f" + optimizer {mem['optimizer_state_mib']:.1f} MiB"
        + (
            f" + bf16/fp16 weight copies {mem['compute_weight_copies_mib']:.1f} MiB"
            if mem["compute_weight_copies_mib"]
            else ""
        )
        + f" + activations {mem['activations_mib']:.1f} MiB = {mem['total_mib']:.1f} MiB (framework not included)",
    ]
    measured, expected = report["measured"], report["expected_seconds"]
    if measured:
        lines += [
            f"  measured          {measured['steps']} steps of model.fit: {measured['ms_per_step']:.1f} ms/step, "
            f"{measured['tokens_per_second']:,.0f} tokens/s, {_si(measured['flops_per_second'])}FLOP/s; "
            f"peak memory (RSS) {measured['peak_rss_mib']:,.0f} MiB",
            f"  expected time     {_duration(expected['total'])} on this machine = training "
            f"{_duration(expected['training'])} + evaluation ~{_duration(expected['evaluation'])} + data "
            f"{_duration(expected['data'])} + compilation {_duration(expected['startup'])} + checkpoints "
            f"{_duration(expected['checkpoints'])} (Python/Keras import time not included)",
        ]
    else:
        lines.append("  expected time     not measured (measure_steps=0)")
    return "\n".join(lines)


# === Pretrained checkpoints (`klm estimate --from` / `--init-from`) ===

PRECISION_COLUMNS = ("float32", "bfloat16", "mixed_bfloat16")
_NOT_READ = "(not read by klm estimate)"


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
    from klm.pretrained import apply_lora
    from klm.pretrained.checkpoint import causal_lm_class, load_backbone

    scope = _shapes_only() if shapes_only else _nothing()
    with scope:
        backbone, source = load_backbone(spec, dtype=dtype, load_weights=False)
        if task == "classifier":
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


def estimate_checkpoint(config, num_classes=2, measure_steps=0, warmup_steps=2, log=_log_to_stderr):
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
    from klm.estimate import estimate_checkpoint, format_report
    config = FinetuneConfig(from_run="hf://Qwen/Qwen3-0.6B", train="-", lora_rank=8)
    print(format_report(estimate_checkpoint(config)))
    ```
    """
    from klm.config import FinetuneConfig
    from klm.pretrained.lora import parameter_counts
    from klm.training.session import distribution, setup

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
    frozen = task == "classifier" and config.freeze_backbone and not config.lora_rank
    mode = "lora" if config.lora_rank else "freeze_backbone" if frozen else "full"
    backend, keras = setup(config)
    dtype = "bfloat16" if config.precision == "bfloat16" else None  # as klm.train._load_checkpoint

    model, source, lora = _build_checkpoint_model(config, spec, task, num_classes, dtype, shapes_only=True)
    counts = parameter_counts(model)
    backbone_total = parameter_counts(model.backbone)["total"] - (lora["lora"] if lora else 0)
    lora_params = lora["lora"] if lora else 0
    dims = checkpoint_dims(model.backbone)
    lm_head = task == "causal_lm"
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
        "num_classes": num_classes if task == "classifier" else None,
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

    from klm.train import build_optimizer, build_optimizer_state
    from klm.training.session import jit_compile

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
        if task == "causal_lm":
            from klm.losses import lm_loss

            compile_args.update(loss=lm_loss(), weighted_metrics=[])
        model.compile(**compile_args)
        model.build({"token_ids": (None, None), "padding_mask": (None, None)})
        build_optimizer_state(model)
    build_seconds = time.perf_counter() - t0
    rng = np.random.default_rng(config.seed)
    token_ids = rng.integers(0, dims["vocabulary_size"], size=(batch, seq), dtype="int32")
    x = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    y = token_ids if task == "causal_lm" else rng.integers(0, num_classes, size=(batch,), dtype="int32")
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    log(
        f"klm estimate: timing {warmup_steps} warm-up + {measure_steps} training steps "
        f"({backend}, {mode}, {batch}x{seq}, {config.precision}; random weights and tokens)"
    )
    seconds_per_step, startup, timed = _time_fit(
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
        "peak_rss_mib": _peak_rss_mib(),
    }
    if config.max_steps:
        report["expected_seconds"] = {
            "training": config.max_steps * seconds_per_step,
            "startup": startup + build_seconds,
        }
    return report


def format_checkpoint_report(report):
    """`estimate_checkpoint`'s report as the lines `klm estimate --from/--init-from` prints."""
    src, p, dims = report["checkpoint"], report["parameters"], report["dims"]
    kind = src["kind"] + (f", model_type {src['model_type']}" if src.get("model_type") else "")
    loaded = "weights read" if src.get("weights_loaded") else "built from its config, weights not read"
    if report["mode"] == "lora":
        lora = report["lora"]
        mode = f"LoRA rank {lora['rank']} (alpha {lora['alpha']:g}) on {lora['targets']} ({lora['layers']} layers)"
    else:
        mode = {"full": "full fine-tuning", "freeze_backbone": "frozen backbone (head only)"}[report["mode"]]
    head = f"classifier head, {report['num_classes']} classes" if report["task"] == "classifier" else "causal LM"
    heads = f"{dims['num_heads']} heads" + (
        f" ({dims['num_key_value_heads']} key/value)" if dims["num_key_value_heads"] != dims["num_heads"] else ""
    )
    parts = f"backbone {p['backbone']:,} + head {p['head']:,}" + (f" + LoRA {p['lora']:,}" if p["lora"] else "")
    lines = [
        f"klm estimate: {report['command']} {src['name']} ({kind}; {src['backbone']}, {loaded})",
        f"  model             {head}; {mode}; backend {report['backend']} ({report['device']}), "
        f"batch {report['batch_size']} x {report['seq_len']}, optimizer {report['optimizer']}",
        f"  dimensions        vocabulary {dims['vocabulary_size']:,}, hidden {dims['hidden_dim']:,}, "
        f"{dims['num_layers']} layers, {heads}, feed-forward {dims['intermediate_dim']:,}"
        + (" (gated)" if dims["gated"] else ""),
        f"  parameters        {p['total']:,} total ({parts}); trainable {p['trainable']:,} "
        f"({100 * p['trainable'] / max(p['total'], 1):.2f}%)",
        f"  FLOPs per token   {_si(report['flops_per_token'])}FLOP (training, {report['mode']}); "
        f"{_si(report['flops_per_step'])}FLOP per step",
        "  memory (estimate, MiB; framework not included)",
        "    " + f"{'':24}" + "".join(f"{c:>16}" for c in PRECISION_COLUMNS),
    ]
    rows = (
        ("weights", "weights_mib"),
        ("gradients", "gradients_mib"),
        (f"optimizer ({report['optimizer']})", "optimizer_state_mib"),
        ("bf16 weight copies", "compute_weight_copies_mib"),
        (f"activations ({report['batch_size']} x {report['seq_len']})", "activations_mib"),
        ("total", "total_mib"),
    )
    for label, key in rows:
        lines.append(
            "    " + f"{label:24}" + "".join(f"{report['memory_mib'][c][key]:>16,.1f}" for c in PRECISION_COLUMNS)
        )
    if report["precision"] in PRECISION_COLUMNS:
        lines.append(f"    (--precision {report['precision']} is the {report['precision']} column)")
    measured = report["measured"]
    if measured:
        lines.append(
            f"  measured          {measured['steps']} steps of model.fit (random weights and tokens, "
            f"{report['precision']}): {measured['ms_per_step']:.1f} ms/step, {measured['tokens_per_second']:,.0f} "
            f"tokens/s, {_si(measured['flops_per_second'])}FLOP/s; compilation {measured['startup_seconds']:.1f} s, "
            f"model build {measured['build_seconds']:.1f} s; peak memory (RSS) {measured['peak_rss_mib']:,.0f} MiB"
        )
        if report["expected_seconds"]:
            lines.append(
                f"  expected time     training {_duration(report['expected_seconds']['training'])} for "
                f"--max-steps (evaluation, data and checkpoints not included)"
            )
    else:
        lines.append(
            "  step time         not measured (--measure-steps N builds the model with random weights "
            "and times N steps)"
        )
    return "\n".join(lines)
