"""What every training recipe builds the same way: optimizer, compiled causal LM, checkpoints to start from.

Used by `klm.train.pretrain`, `klm.finetune.finetune` (classifiers) and
`klm.sft.recipe` (generative fine-tuning). Each recipe does only what is its
own (load its data, build its model and datasets, report its figures);
`klm.training.TrainingSession` does the rest. The backend must be chosen
before Keras is imported, so this module imports Keras only inside its
functions, after `klm.backend.use_backend`.
"""

import sys

from klm import backend as backend_lib
from klm.data.text.cleaning_config import CleaningConfig
from klm.errors import ConfigError
from klm.metrics import perplexity
from klm.pretrained import apply_lora, load_checkpoint, token_stream
from klm.pretrained.checkpoint import check_backbone_seq_len
from klm.training.session import jit_compile

# Fields that must match when an existing run folder is resumed: changing any
# of them would silently train a different model on the old checkpoint.
IDENTITY_FIELDS = (
    "task",
    "preset",
    "tokenizer",
    "vocab_size",
    "seq_len",
    "min_freq",
    "from_run",
    "init_from",
    "lora_rank",
    "lora_targets",
)


def log(message):
    print(message, file=sys.stderr, flush=True)


def perplexity_or_none(loss):

    return None if loss is None else perplexity(loss)


def cleaning_for(config, classification=False):
    """The cleaning the flags ask for (`--lowercase`, `--strict`, `--scrub-privacy`); `None`: the default.

    Pretraining text gets the source kind's default cleaning with these
    steps turned on; labelled examples get the full default cleaning plus
    these steps when any is set, and no cleaning otherwise (as before).
    """
    flags = {"lowercase": config.lowercase, "strict_utf8": config.strict, "scrub_privacy": config.scrub_privacy}
    chosen = {name: True for name, on in flags.items() if on}
    if classification and chosen:
        return CleaningConfig(**chosen)
    return chosen or None


def build_optimizer(config, steps_per_epoch, total_steps):
    """SGD (the seed) or AdamW, with the configured schedule and clipping.

    `schedule="step"` is the reference's `StepLR(1.0, gamma)`: the learning rate is
    multiplied by `lr_decay` once per epoch (`ExponentialDecay` with
    `staircase=True` and `decay_steps` = optimizer steps per epoch). `"cosine"`
    is a linear warm-up followed by cosine decay to zero at `total_steps`.

    Args:
        config: the run's config.
        steps_per_epoch: training batches per epoch.
        total_steps: optimizer steps in the whole run.
    """
    import keras

    # Schedules count optimizer steps; with --grad-accum N an epoch of
    # `steps_per_epoch` batches is steps_per_epoch / N steps.
    if config.schedule == "step":
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            config.lr,
            decay_steps=max(steps_per_epoch / config.grad_accum, 1),
            decay_rate=config.lr_decay,
            staircase=True,
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
        return backend_lib.fuse_global_clipnorm(keras.optimizers.SGD(**common))
    optimizer = backend_lib.fuse_global_clipnorm(keras.optimizers.AdamW(weight_decay=config.weight_decay, **common))
    # No weight decay on biases, LayerNorm scales and position tables.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "position"])
    return optimizer


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
        cleaning=cleaning_for(config),
        valid_fraction=config.valid_fraction or None,
        seed=config.seed,
    )


def compile_causal_lm(model, config, steps_per_epoch, total_steps, loss=None):
    """Compiles a causal LM for training: `config`'s optimizer, `--jit` and `--steps-per-execution`.

    `loss`: `lm_loss()` by default (SFT passes its response-only loss).
    """
    from klm.losses import lm_loss

    model.compile(
        optimizer=build_optimizer(config, steps_per_epoch, total_steps),
        loss=lm_loss() if loss is None else loss,
        weighted_metrics=[],
        jit_compile=jit_compile(config),
        steps_per_execution=config.steps_per_execution,
        sampler="greedy",
    )


def build_causal_lm(config, vocabulary_size, steps_per_epoch, total_steps):
    """A compiled, built `KlmCausalLM` for `config` (call inside the distribution scope)."""
    from klm.models import KlmBackbone, KlmCausalLM

    if getattr(config, "precision_reason", None):  # --precision auto: say what was chosen and why
        log(f"[klm] {config.precision_reason}")
    arguments = backbone_overrides(config, vocabulary_size)
    with remat_scope(config, arguments["num_layers"]):
        backbone = KlmBackbone(**arguments)
    model = KlmCausalLM(backbone)
    compile_causal_lm(model, config, steps_per_epoch, total_steps)
    model.build({"token_ids": (None, None), "padding_mask": (None, None)})
    build_optimizer_state(model)
    return model


def backbone_overrides(config, vocabulary_size):
    """The `KlmBackbone` arguments of `config.preset` with the run's `--dropout` and `--attention-dropout`."""
    from klm.models import preset_config

    return preset_config(
        config.preset, vocabulary_size, dropout=config.dropout, attention_dropout=config.attention_dropout
    )


def remat_scope(config, num_layers):
    """With `--remat`, a `keras.RematScope` over the backbone's decoder blocks; else a null context.

    Each decoder block created inside it (`transformer_layer_{i}`) keeps only
    its input for the backward pass and recomputes the rest
    (`jax.checkpoint`, `torch.utils.checkpoint`, `tf.recompute_grad`), the
    usual per-block checkpointing: activation memory drops to the blocks'
    inputs plus one block's activations, for about one more forward pass of
    the blocks per step. Keras's `mode="full"` would wrap every nested layer
    too, recomputing the innermost ones once per enclosing level. PyTorch
    only: `torch.utils.checkpoint` restores the generator state before
    recomputing, so the dropout masks (and the weights after a step) are the
    same as without it.
    """
    import contextlib

    if not config.remat:
        return contextlib.nullcontext()
    import keras

    if keras.backend.backend() != "torch":
        # Measured: JAX's checkpoint leaks the dropout layers' seed state out of the recomputed function
        # (UnexpectedTracerError), and TensorFlow's recompute_grad takes no keyword arguments in a graph.
        raise ConfigError(
            "Expected --remat with --backend torch (Keras's rematerialization of a decoder block fails on "
            f"JAX and TensorFlow). Received: --remat with --backend={keras.backend.backend()}"
        )
    return keras.RematScope(mode="list_of_layers", layer_names=[f"transformer_layer_{i}" for i in range(num_layers)])


def build_optimizer_state(model):
    """Creates the optimizer's variables now (Keras would on the first step).

    A resumed run loads them from its backup before the first step; Keras
    skips (with only a warning) optimizer state that has nowhere to go.
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


# === Pretraining ===


def load_checkpoint_for(spec, config):
    """`klm.pretrained.load_checkpoint` with the run's precision (`bfloat16` loads bf16 weights).

    Raises `ConfigError` when `config.seq_len` exceeds the checkpoint's positions.
    """

    checkpoint = load_checkpoint(spec, dtype="bfloat16" if config.precision == "bfloat16" else None)
    check_backbone_seq_len(checkpoint.backbone, config.seq_len, spec)
    return checkpoint


def checkpoint_corpus(config, checkpoint):
    """The training/valid/test token streams, tokenized with the checkpoint's own tokenizer."""
    from klm.data import Corpus

    train = token_stream(checkpoint, config.data, text_field=config.text_field)
    valid = token_stream(checkpoint, config.valid, text_field=config.text_field) if config.valid else None
    test = token_stream(checkpoint, config.test, text_field=config.text_field) if config.test else None
    if valid is None and config.valid_fraction:
        cut = int(len(train) * (1 - config.valid_fraction))
        train, valid = train[:cut], train[cut:]
    return Corpus(
        tokenizer=checkpoint.tokenizer,
        train=train,
        valid=valid,
        test=test,
        eos_between_documents=checkpoint.end_token_id is not None,
    )


def enable_lora(model, config, session):
    """Enables LoRA (`--lora-rank`) on `model`'s backbone; records the counts for the summary."""
    if not config.lora_rank:
        return

    info = apply_lora(model, config.lora_rank, alpha=config.lora_alpha, targets=config.lora_targets)
    session.summary_extra["lora"] = {k: info[k] for k in ("rank", "alpha", "targets", "lora", "trainable", "total")}
    log(
        f"LoRA rank {info['rank']} (alpha {info['alpha']}) on {len(info['layers'])} layers: "
        f"{info['trainable']:,} of {info['total']:,} parameters train"
    )


def compile_pretrained_lm(checkpoint, config, session, steps_per_epoch, total_steps):
    """The checkpoint's causal LM, compiled like `build_causal_lm` (call inside the distribution scope)."""
    model = checkpoint.causal_lm
    # Batches arrive tokenized; the tokenizer is saved in the run's tokenizer/.
    if hasattr(model, "preprocessor"):
        model.preprocessor = None
    enable_lora(model, config, session)
    compile_causal_lm(model, config, steps_per_epoch, total_steps)
    build_optimizer_state(model)
    return model


def describe_model(model):
    return (
        str(model)
        if type(model).__module__.startswith("klm")
        else (f"<{type(model).__name__} {model.count_params():,} params>")
    )


def evaluate_loss(model, dataset):
    if dataset is None:
        return None
    result = model.evaluate(dataset, verbose=0, return_dict=True)
    return float(result["loss"])
