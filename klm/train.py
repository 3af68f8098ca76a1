"""Pretraining and fine-tuning: `pretrain(PretrainConfig)`, `finetune(FinetuneConfig)`.

Both run through `model.fit` and leave a run folder (see `klm.runs`). The
backend must be chosen before Keras is imported, so this module imports
Keras only inside its functions, after `klm.backend.use_backend`.
"""

import math
import shutil
import sys
from pathlib import Path

from klm import backend as backend_lib
from klm import runs
from klm.config import FinetuneConfig, PretrainConfig
from klm.errors import ConfigError, KlmError, RunDirError

# Fields that must match when an existing run folder is resumed: changing any
# of them would silently train a different model on the old checkpoint.
_IDENTITY_FIELDS = ("task", "preset", "tokenizer", "vocab_size", "seq_len", "min_freq", "from_run")


class TrainingInterrupted(KlmError):
    """Ctrl-C: the model was saved; re-running the command resumes."""


class TrainingDiverged(KlmError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def num_tokens(tokens):
    """Length of a token stream (NumPy array or prepared split)."""
    return int(tokens.num_tokens) if hasattr(tokens, "num_tokens") else len(tokens)


def _log(message):
    print(message, file=sys.stderr, flush=True)


# === Run folder handling ===


def prepare_run_dir(run_dir, resolved, restart):
    """Creates, resumes or (with `restart`) clears a run folder.

    Returns:
        `True` when an existing run is resumed.

    Raises:
        RunDirError: the folder holds a run with a different task, preset or
            tokenizer (never overwritten silently), or is not a run folder.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"Expected --run-dir to be a folder, but it is a file. Received: --run-dir={str(run_dir)!r}")
    config_path = run_dir / runs.CONFIG_FILE
    if restart and run_dir.exists():
        if any(run_dir.iterdir()) and not config_path.exists():
            raise RunDirError(
                f"--restart would delete {run_dir}, which is not a klm run folder (no {runs.CONFIG_FILE}). "
                f"Received: --run-dir={str(run_dir)!r}"
            )
        shutil.rmtree(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not config_path.exists():
            raise RunDirError(
                f"{run_dir} is not empty and is not a klm run folder; choose another --run-dir. "
                f"Received: --run-dir={str(run_dir)!r}"
            )
        previous = runs.read_json(config_path)
        for field in _IDENTITY_FIELDS:
            if previous.get(field) != resolved.get(field):
                raise RunDirError(
                    f"{run_dir} holds a run with {field}={previous.get(field)!r}, but this command asks for "
                    f"{field}={resolved.get(field)!r}. Use another --run-dir, or --restart to start over "
                    f"(deletes the old run). Received: --run-dir={str(run_dir)!r}"
                )
        return True
    run_dir.mkdir(parents=True, exist_ok=True)
    return False


def lm_model_inputs(dataset):
    """Maps `(x, y)` token batches to the backbone's `({"token_ids", "padding_mask"}, y)`.

    LM windows have no padding, so the mask is all ones.
    """
    import tensorflow as tf

    def to_inputs(x, y):
        return {"token_ids": x, "padding_mask": tf.ones_like(x)}, y

    return dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE)


def _with_length(dataset, steps):
    """Declares the dataset's length so Keras restarts it every epoch.

    With an unknown cardinality and `steps_per_epoch`, Keras keeps one
    iterator across epochs and runs dry after the first.
    """
    import tensorflow as tf

    return dataset.apply(tf.data.experimental.assert_cardinality(steps))


# === Optimizer ===


def build_optimizer(config, steps_per_epoch, total_steps):
    """SGD (the seed) or AdamW, with the configured schedule and clipping.

    `schedule="step"` is the seed's `StepLR(1.0, gamma)`: the learning rate is
    multiplied by `lr_decay` once per epoch (`ExponentialDecay` with
    `staircase=True` and `decay_steps` = steps per epoch). `"cosine"` is a
    linear warm-up followed by cosine decay to zero at `total_steps`.
    """
    import keras

    if config.schedule == "step":
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            config.lr, decay_steps=max(steps_per_epoch, 1), decay_rate=config.lr_decay, staircase=True
        )
    elif config.schedule == "cosine":
        warmup = min(config.warmup_steps, max(total_steps - 1, 0))
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.lr,
            decay_steps=max(total_steps - warmup, 1),
            warmup_target=config.lr if warmup else None,
            warmup_steps=warmup,
        )
    else:
        learning_rate = config.lr
    common = dict(
        learning_rate=learning_rate,
        global_clipnorm=config.clipnorm or None,  # 0 turns clipping off
        gradient_accumulation_steps=config.grad_accum if config.grad_accum > 1 else None,
    )
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(**common)
    optimizer = keras.optimizers.AdamW(weight_decay=config.weight_decay, **common)
    # No weight decay on biases, LayerNorm scales and position tables.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "position"])
    return optimizer


def _jit(config):
    return {"auto": "auto", "on": True, "off": False}[config.jit]


def _verbosity(config):
    """(keras fit verbose, stream for plain log lines)."""
    mode = config.verbose
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "lines"
    return {"bar": (1, None), "lines": (0, sys.stdout), "quiet": (0, None)}[mode]


# === Model and data shared by pretrain and estimate (keep them in step) ===


def lm_loss():
    """The next-token loss: `klm.losses.SparseCrossEntropyFromLogits`.

    Same values as `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`,
    without Keras's one-hot (JAX) or strided log-softmax (PyTorch) and with the
    softmax always in float32 (see `klm/losses.py`).
    """
    from klm.losses import SparseCrossEntropyFromLogits

    return SparseCrossEntropyFromLogits()


def load_pretrain_corpus(config, tokenizer=None):
    """The training/valid/test token streams of a `PretrainConfig`.

    `tokenizer` (a resumed run's) is reused; otherwise one is trained on the
    training text as `config.tokenizer` says.
    """
    from klm import data as data_lib

    sentencepiece_bpe = config.tokenizer == "sentencepiece-bpe"
    return data_lib.load_corpus(
        config.data,
        valid=config.valid,
        test=config.test,
        tokenizer=tokenizer,
        tokenizer_kind="sentencepiece" if sentencepiece_bpe else config.tokenizer,
        sentencepiece_type="bpe" if sentencepiece_bpe else "unigram",
        vocab_size=config.vocab_size,
        min_freq=config.min_freq,
        text_field=config.text_field,
        cleaning={"lowercase": True} if config.lowercase else None,
        valid_fraction=config.valid_fraction or None,
        seed=config.seed,
    )


def build_causal_lm(config, vocabulary_size, steps_per_epoch, total_steps):
    """A compiled, built `KlmCausalLM` for `config` (call inside the distribution scope)."""
    from klm.models import KlmBackbone, KlmCausalLM, preset_config

    backbone = KlmBackbone(**preset_config(config.preset, vocabulary_size, dropout=config.dropout))
    model = KlmCausalLM(backbone)
    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch, total_steps),
        loss=lm_loss(),
        weighted_metrics=[],
        jit_compile=_jit(config),
        steps_per_execution=config.steps_per_execution,
        sampler="greedy",
    )
    model.build({"token_ids": (None, None), "padding_mask": (None, None)})
    return model


# === The training loop ===


def _fit(model, config, run_dir, train_ds, valid_ds, steps_per_epoch, tokens_per_step, metric, last_step_tokens=None):
    """Runs `model.fit` with klm's callbacks; returns (history, logger)."""
    import keras

    from klm import callbacks as cb

    verbose, stream = _verbosity(config)
    # In a multi-process run every process trains; only process 0 writes.
    chief = backend_lib.process_index() == 0
    if not chief:
        verbose, stream = 0, None
    guard = cb.NonFiniteLoss()
    logger = cb.StepLogger(
        run_dir / "metrics.csv" if chief else None, steps_per_epoch, tokens_per_step, every=config.log_every,
        stream=stream, metric=metric, last_step_tokens=last_step_tokens,
    )
    checkpoint = cb.EpochCheckpoint(
        run_dir, monitor="val_loss" if valid_ds is not None else None, guard=guard, write=chief
    )
    callbacks = [
        guard,
        cb.AtomicBackupAndRestore(
            str(run_dir / "backup"), save_freq=config.backup_every, delete_checkpoint=False, write=chief
        ),
        logger,
        checkpoint,
    ]
    if chief:
        callbacks.append(
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), update_freq=config.log_every, write_graph=False)
        )
    if config.max_steps:
        callbacks.append(cb.MaxSteps(config.max_steps))
    epochs = config.epochs
    if config.max_steps:
        epochs = max(epochs, math.ceil(config.max_steps / steps_per_epoch))
    if backend_lib.process_count() > 1:
        # Keras shards the dataset per process (rebatch + shard), which loses
        # its length, so Keras keeps one iterator for all epochs: it must not
        # end. Every epoch takes exactly `steps_per_epoch` batches, so epochs
        # still start at the same place in the data.
        train_ds = train_ds.repeat()
    try:
        history = model.fit(
            train_ds,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            validation_data=valid_ds,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the tf.data pipeline shuffles (or, contiguous, must not)
        )
    except KeyboardInterrupt:
        if guard.bad_step is None:
            checkpoint.save_last()
        raise TrainingInterrupted(
            f"Interrupted. Saved {run_dir / 'last.keras'} and the resume backup; "
            "re-run the same command to continue."
        )
    if guard.bad_step is not None:
        raise TrainingDiverged(
            f"The training loss became NaN/inf at step {guard.bad_step}; training stopped. The last good "
            f"checkpoint ({run_dir / 'last.keras'}) and resume backup were kept. Lower --lr or set --clipnorm, "
            "then re-run with --restart or resume."
        )
    # fit() may stop mid-epoch (--max-steps): keep that state too.
    checkpoint.save_last()
    # (every process checks the same shared folder, so all join the save)
    backend_lib.barrier("klm-last-saved")
    if not (run_dir / "best.keras").exists():
        runs.save_model(model, run_dir / "best.keras", write=chief)
    return history, logger


def _setup(config):
    """Backend, devices, cluster, seed, precision; returns (backend, keras)."""
    backend = backend_lib.use_backend(config.backend)
    try:
        backend_lib.check_steps_per_execution(config.steps_per_execution, backend)
        backend_lib.configure_cpu_devices(config.cpu_devices, backend)
        import keras

        backend_lib.initialize_cluster(config.coordinator, config.num_processes, config.process_id)
    except backend_lib.BackendError as e:
        raise ConfigError(str(e))
    backend_lib.set_seed(config.seed)
    keras.config.set_dtype_policy(config.precision)
    return backend, keras


def _finish(run_dir, config, backend, logger, model, extra):
    import keras

    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    summary = {
        "backend": backend,
        "precision": config.precision,
        "steps": steps,
        "train_seconds": round(logger.train_seconds, 3),
        "final_train_loss": logger.last_loss,
        "device": backend_lib.accelerator_name(),
    }
    summary.update(extra)
    from klm.callbacks import plot_curves

    if backend_lib.process_index() == 0:
        plot_curves(run_dir / "metrics.csv", run_dir / "curves.png", metric="ppl" if "test_ppl" in extra else "accuracy")
        runs.write_json(run_dir / runs.SUMMARY_FILE, summary)
    return summary


def _distribution(config):
    try:
        scope, description = backend_lib.distribution_scope(config.strategy, config.mesh)
    except backend_lib.BackendError as e:
        raise ConfigError(str(e))
    if "MirroredStrategy" in description and config.clipnorm:
        _log(
            "note: under tf.distribute, Keras 3's TensorFlow optimizer clips each replica's gradients "
            "before summing them, so --clipnorm acts per replica, not on the global gradient. Use "
            "--backend jax for exact global clipping, or --clipnorm 0."
        )
    return scope, description


def _evaluate_loss(model, dataset):
    if dataset is None:
        return None
    result = model.evaluate(dataset, verbose=0, return_dict=True)
    return float(result["loss"])


def _ppl(loss):
    return None if loss is None else math.exp(min(loss, 700))


def pretrain(config: PretrainConfig):
    """Pretrains a causal LM and returns the summary dict (also in `summary.json`).

    Re-running with the same `run_dir` resumes from the last backup;
    `config.restart` starts over.

    Example:
    ```python
    from klm.config import PretrainConfig
    from klm.train import pretrain
    summary = pretrain(PretrainConfig(data="corpus.txt", run_dir="runs/demo", preset="tiny", max_steps=50))
    ```
    """
    backend, keras = _setup(config)
    from klm import data as data_lib

    run_dir = Path(config.run_dir)
    resolved = dict(config.to_dict(), task="causal_lm", backend=backend)
    chief = backend_lib.process_index() == 0
    if chief:
        resumed = prepare_run_dir(run_dir, resolved, config.restart)
    backend_lib.barrier("klm-run-dir")
    if not chief:
        resumed = (run_dir / runs.CONFIG_FILE).exists()
    tokenizer = None
    if resumed and (run_dir / runs.TOKENIZER_DIR).exists():
        tokenizer = data_lib.load_tokenizer(str(run_dir / runs.TOKENIZER_DIR))
    _log(f"klm pretrain: backend={backend} run_dir={run_dir}{' (resuming)' if resumed else ''}")

    corpus = load_pretrain_corpus(config, tokenizer)
    tokenizer = corpus.tokenizer
    vocabulary_size = int(tokenizer.vocabulary_size())
    if chief and not (run_dir / runs.TOKENIZER_DIR).exists():
        with runs.atomic_path(run_dir / runs.TOKENIZER_DIR) as tmp:
            data_lib.save_tokenizer(tokenizer, tmp)
    resolved.update(
        vocabulary_size=vocabulary_size,
        train_tokens=num_tokens(corpus.train),
        eos_between_documents=corpus.eos_between_documents,
        cleaning_report=corpus.cleaning_report,
    )
    if chief:
        runs.write_json(run_dir / runs.CONFIG_FILE, resolved)

    steps_per_epoch = data_lib.lm_steps_per_epoch(
        num_tokens(corpus.train), config.seq_len, config.batch_size, mode=config.batching
    )
    # Contiguous batching ends each epoch with the seed's shorter step (if the
    # columns do not divide evenly); count its tokens exactly.
    tokens_per_epoch = data_lib.lm_tokens_per_epoch(
        num_tokens(corpus.train), config.seq_len, config.batch_size, mode=config.batching
    )
    tokens_per_step = config.batch_size * config.seq_len
    if steps_per_epoch < 1:
        raise ConfigError(
            f"The training text has {num_tokens(corpus.train)} tokens, too few for one batch of "
            f"--batch-size {config.batch_size} x --seq-len {config.seq_len}."
        )
    train_ds = data_lib.lm_dataset(
        corpus.split("train"), config.seq_len, config.batch_size, mode=config.batching, seed=config.seed
    )
    train_ds = _with_length(lm_model_inputs(train_ds), steps_per_epoch)
    eval_ds = {}
    for split in ("valid", "test"):
        # Held-out splits too short for one batch of eval_batch_size are skipped.
        if corpus.split(split) is not None and data_lib.lm_steps_per_epoch(
            num_tokens(corpus.split(split)), config.seq_len, config.eval_batch_size, mode="contiguous"
        ) >= 1:
            eval_ds[split] = lm_model_inputs(
                data_lib.lm_dataset(corpus.split(split), config.seq_len, config.eval_batch_size, mode="contiguous")
            )
    total_steps = config.max_steps or steps_per_epoch * config.epochs

    scope, description = _distribution(config)
    with scope:
        model = build_causal_lm(config, vocabulary_size, steps_per_epoch, total_steps)
    _log(
        f"model: {model} | preset {config.preset} | precision {config.precision} | {description}\n"
        f"data: {num_tokens(corpus.train):,} training tokens, {steps_per_epoch} steps/epoch of "
        f"{config.batch_size}x{config.seq_len}, vocabulary {vocabulary_size:,}"
    )
    history, logger = _fit(
        model, config, run_dir, train_ds, eval_ds.get("valid"), steps_per_epoch, tokens_per_step, metric="ppl",
        last_step_tokens=tokens_per_epoch - (steps_per_epoch - 1) * tokens_per_step,
    )
    # Report the best checkpoint on held-out data, as the seed does.
    backend_lib.barrier("klm-checkpoints-written")
    best = runs.load_model(runs.checkpoint_path(run_dir, "best"))
    best.compile(loss=lm_loss(), weighted_metrics=[])
    valid_loss = _evaluate_loss(best, eval_ds.get("valid"))
    test_loss = _evaluate_loss(best, eval_ds.get("test"))
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    extra = {
        "task": "causal_lm",
        "train_tokens": (steps // steps_per_epoch) * tokens_per_epoch + (steps % steps_per_epoch) * tokens_per_step,
        "tokens_per_second": round(logger.tokens_run / max(logger.train_seconds, 1e-9), 1),
        "valid_loss": valid_loss,
        "valid_ppl": _ppl(valid_loss),
        "test_loss": test_loss,
        "test_ppl": _ppl(test_loss),
        "parameters": int(model.count_params()),
    }
    if test_loss is not None:
        line = "=" * 89
        print(f"{line}\n| End of training | test loss {test_loss:5.2f} | test ppl {_ppl(test_loss):8.2f}\n{line}", flush=True)
    return _finish(run_dir, config, backend, logger, model, extra)


def finetune(config: FinetuneConfig):
    """Fine-tunes (or trains from scratch) a classifier; returns the summary dict.

    With `from_run` a pretrained run folder, its backbone weights and
    tokenizer are reused; the tokenizer settings given here must match it.
    """
    backend, keras = _setup(config)
    from klm import data as data_lib
    from klm.models import KlmBackbone, KlmClassifier, preset_config

    run_dir = Path(config.run_dir)
    resolved = dict(config.to_dict(), task="classifier", backend=backend)
    pretrained = None
    if config.from_run != "none":
        source_config = runs.read_run_config(config.from_run)
        if source_config["task"] != "causal_lm":
            raise RunDirError(
                f"Expected --from to be a pretraining run (task causal_lm). "
                f"Received: --from={config.from_run!r} (task {source_config['task']})"
            )
        # The text must be tokenized exactly as in pretraining: any tokenizer
        # setting given here has to agree with the pretrained run's.
        for field in ("tokenizer", "vocab_size", "min_freq", "lowercase"):
            given, used = getattr(config, field), source_config.get(field)
            explicit = given is not None and not (field == "min_freq" and given == 1) and given is not False
            if explicit and given != used:
                raise ConfigError(
                    f"--{field.replace('_', '-')} {given} does not match the pretrained run {config.from_run}, "
                    f"which used {field}={used!r}: fine-tuning must tokenize like pretraining. Leave the "
                    f"option out to reuse the run's tokenizer. Received: --{field.replace('_', '-')}={given!r}"
                )
        resolved["tokenizer"] = source_config.get("tokenizer")
        resolved["preset"] = source_config.get("preset")
        pretrained = source_config
    resumed = prepare_run_dir(run_dir, resolved, config.restart)
    _log(f"klm finetune: backend={backend} run_dir={run_dir}{' (resuming)' if resumed else ''}")

    if pretrained is not None:
        tokenizer = data_lib.load_tokenizer(str(Path(config.from_run) / runs.TOKENIZER_DIR))
    elif resumed and (run_dir / runs.TOKENIZER_DIR).exists():
        tokenizer = data_lib.load_tokenizer(str(run_dir / runs.TOKENIZER_DIR))
    else:
        tokenizer = None
    labelled = data_lib.load_classification_data(
        config.train,
        valid=config.valid,
        test=config.test,
        text_field=config.text_field,
        label_field=config.label_field,
        label_vocabulary=_label_vocabulary(run_dir, data_lib) if resumed else None,
        cleaning=data_lib.CleaningConfig(lowercase=True) if config.lowercase else None,
    )
    vocabulary = labelled.label_vocabulary
    labels, multi_label = list(vocabulary.labels), bool(vocabulary.multi_label)
    if config.multi_label is not None and config.multi_label != multi_label:
        raise ConfigError(
            f"--{'multi' if config.multi_label else 'single'}-label was given, but the labels in {config.train} are "
            f"{'multi' if multi_label else 'single'}-label. Received: --multi-label={config.multi_label}"
        )
    if tokenizer is None:
        kind = config.tokenizer or "word"
        tokenizer = data_lib.train_tokenizer(
            "sentencepiece" if kind == "sentencepiece-bpe" else kind,
            labelled.train["texts"],
            vocab_size=config.vocab_size,
            min_freq=config.min_freq,
            **({"sentencepiece_model_type": "bpe"} if kind == "sentencepiece-bpe" else {}),
        )
    if not (run_dir / runs.TOKENIZER_DIR).exists():
        with runs.atomic_path(run_dir / runs.TOKENIZER_DIR) as tmp:
            data_lib.save_tokenizer(tokenizer, tmp)
    runs.write_json(run_dir / runs.LABELS_FILE, {"labels": labels, "multi_label": multi_label})
    vocabulary_size = int(tokenizer.vocabulary_size())
    resolved.update(vocabulary_size=vocabulary_size, labels=labels, multi_label=multi_label)
    runs.write_json(run_dir / runs.CONFIG_FILE, resolved)

    def dataset(split, shuffle):
        return data_lib.classification_dataset(
            split["texts"], split["labels"], tokenizer, config.seq_len, config.batch_size, shuffle=shuffle,
            seed=config.seed,
        )

    steps_per_epoch = math.ceil(len(labelled.train["texts"]) / config.batch_size)
    train_ds = _with_length(dataset(labelled.train, True), steps_per_epoch)
    valid_ds = dataset(labelled.valid, False) if labelled.valid is not None else None
    test_ds = dataset(labelled.test, False) if labelled.test is not None else None
    total_steps = config.max_steps or steps_per_epoch * config.epochs

    scope, description = _distribution(config)
    with scope:
        if pretrained is not None:
            lm = runs.load_model(runs.checkpoint_path(config.from_run, "best"))
            backbone_config = lm.backbone.get_config()
            if config.dropout is not None:
                backbone_config["dropout"] = config.dropout
            backbone = KlmBackbone.from_config(backbone_config)
            backbone.set_weights(lm.backbone.get_weights())
            del lm
        else:
            backbone = KlmBackbone(**preset_config(config.preset, vocabulary_size, dropout=config.dropout))
        backbone.trainable = not config.freeze_backbone
        model = KlmClassifier(
            backbone,
            num_classes=len(labels),
            multi_label=multi_label,
            pooling=config.pooling,
            dropout=config.head_dropout,
        )
        model.compile(optimizer=build_optimizer(config, steps_per_epoch, total_steps), jit_compile=_jit(config))
    _log(f"model: {model} | from {config.from_run} | {len(labels)} classes | {description}")
    history, logger = _fit(
        model, config, run_dir, train_ds, valid_ds, steps_per_epoch, config.batch_size * config.seq_len,
        metric="accuracy",
    )
    best = runs.load_model(runs.checkpoint_path(run_dir, "best"))
    from klm.evaluate import classification_metrics

    extra = {"task": "classifier", "labels": labels, "multi_label": multi_label}
    for split, ds in (("valid", valid_ds), ("test", test_ds)):
        if ds is not None:
            metrics = classification_metrics(best, ds, labels, multi_label)
            extra[f"{split}_accuracy"] = metrics["accuracy"]
            extra[f"{split}_macro_f1"] = metrics["macro_f1"]
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    extra["train_tokens"] = steps * config.batch_size * config.seq_len
    extra["tokens_per_second"] = round(
        logger.tokens_run / max(logger.train_seconds, 1e-9), 1
    )
    if "test_accuracy" in extra:
        print(f"| End of training | test accuracy {extra['test_accuracy']:.4f} | test macro-F1 {extra['test_macro_f1']:.4f}")
    return _finish(run_dir, config, backend, logger, model, extra)


def _label_vocabulary(run_dir, data_lib):
    """The label vocabulary of a run being resumed (labels must keep their ids)."""
    path = Path(run_dir) / runs.LABELS_FILE
    return data_lib.LabelVocabulary.load(str(path)) if path.exists() else None
