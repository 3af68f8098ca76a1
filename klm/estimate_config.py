"""`EstimateConfig`: the options of `klm estimate` besides the training ones, checked before anything is built.

`klm estimate` takes `klm pretrain`'s flags (a `PretrainConfig`), and
`klm finetune`'s `--from`, `--freeze-backbone`, `--pooling` and
`--head-dropout` (a `FinetuneConfig`): a pretrain command line becomes an
estimate by changing the command name. This config holds the estimate's own
options, and which training flags go together. Importing it imports no Keras
(`klm estimate --help` builds its options from it).
"""

import dataclasses

from klm.config import FinetuneConfig, PretrainConfig, check_fields, flag_of, option
from klm.errors import ConfigError

# `klm finetune`'s options that `klm estimate` takes (`--from CKPT` estimates
# what `klm finetune --from CKPT` trains: klm's classifier head on the
# checkpoint's backbone).
FINETUNE_OPTIONS = ("from_run", "freeze_backbone", "pooling", "head_dropout")
# `klm pretrain`'s options that describe its data or a model trained from
# scratch: a checkpoint estimate reads no data and has its own model.
NOT_WITH_CHECKPOINT = (
    "preset",
    "batching",
    "eval_batch_size",
    "valid_fraction",
    "tokenizer",
    "vocab_size",
    "min_freq",
    "lowercase",
)
# What a checkpoint estimate passes for the data it does not read.
NOT_READ = "(not read by klm estimate)"


@dataclasses.dataclass
class EstimateConfig:
    """Options of `klm estimate` (each field with a help text is a command-line flag).

    Args:
        training_options: the `klm pretrain` / `klm finetune` options given
            (field name -> value): with `from_run`, an estimate of
            `klm finetune --from` (a `FinetuneConfig`); with `init_from`, of
            `klm pretrain --init-from`; otherwise of `klm pretrain`.
        measure_steps: training steps to time (0: none); default 5 for a
            pretraining run, 0 for a checkpoint.
        measure_warmup: training steps run before timing.
        num_classes: `--from`: classes of the classifier head (default 2).
        json: print the estimate as JSON.

    Example:

    ```python
    from klm.estimate_config import EstimateConfig
    config = EstimateConfig(training_options={"from_run": "hf://Qwen/Qwen3-0.6B", "lora_rank": 8})
    config.training_class, config.training_values()  # FinetuneConfig, {... "train": "(not read ...)"}
    ```
    """

    training_options: dict = dataclasses.field(default_factory=dict)
    measure_steps: int | None = option(
        None,
        "Training steps to time after the warm-up (0: no measured run, no time estimate).",
        check="non_negative",
        default_help="5; 0 with --from/--init-from (timing builds the checkpoint's model with random weights)",
    )
    num_classes: int | None = option(
        None, "With --from: classes of the classifier head (its size only).", check="[2, inf)", default_help="2"
    )
    measure_warmup: int = option(2, "Training steps run before timing (compilation happens here).", check="positive")
    json: bool = option(False, "Print the estimate as JSON.")

    def __post_init__(self):
        check_fields(self)
        given = self.training_options
        known = set(PretrainConfig.__dataclass_fields__) | set(FINETUNE_OPTIONS)
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"Expected `klm pretrain` options or {', '.join(FINETUNE_OPTIONS)}. Received: {unknown}")
        from_run, init_from = given.get("from_run"), given.get("init_from")
        if from_run is None and init_from is None:
            needs_from = [name for name in FINETUNE_OPTIONS if name in given]
            needs_from += ["num_classes"] if self.num_classes else []
            if needs_from:
                flag = _flag(needs_from[0])
                raise ConfigError(f"{flag} needs --from CHECKPOINT. Received: {flag} without --from")
            return
        if from_run is not None and init_from is not None:
            raise ConfigError(
                "--from (estimate `klm finetune --from`) and --init-from (estimate `klm pretrain "
                "--init-from`) exclude each other. Received: both"
            )
        checkpoint_flag = "--from" if from_run is not None else "--init-from"
        for name in NOT_WITH_CHECKPOINT + (("data",) if from_run is not None else ()):
            if name in given:
                raise ConfigError(
                    f"{_flag(name)} does not apply to a checkpoint estimate ({checkpoint_flag}): the model and "
                    f"tokenizer are the checkpoint's and no data is read. Received: {_flag(name)}"
                )
        if from_run is not None:
            if from_run == "none":
                raise ConfigError(
                    "Expected --from CHECKPOINT (for --from none, estimate a pretraining run with "
                    "--data and --preset). Received: --from none"
                )
            return
        if self.num_classes is not None:
            raise ConfigError(
                "--num-classes needs --from CHECKPOINT (--init-from estimates a causal LM). "
                "Received: --num-classes with --init-from"
            )
        for name in FINETUNE_OPTIONS[1:]:
            if name in given:
                raise ConfigError(
                    f"{_flag(name)} applies to --from (fine-tuning a classifier). "
                    f"Received: {_flag(name)} with --init-from"
                )

    @property
    def checkpoint(self):
        """Whether this estimates fine-tuning a checkpoint (`--from` or `--init-from`), not pretraining."""
        return self.training_options.get("from_run") is not None or self.training_options.get("init_from") is not None

    @property
    def training_class(self):
        """The config the estimated command would run: `FinetuneConfig` for `--from`, else `PretrainConfig`."""
        return FinetuneConfig if self.training_options.get("from_run") is not None else PretrainConfig

    def training_values(self):
        """`training_options` as `training_class` takes them: a checkpoint estimate names data it does not read."""
        values = dict(self.training_options)
        if self.training_class is FinetuneConfig:
            values = {k: v for k, v in values.items() if k in FinetuneConfig.__dataclass_fields__}
            values["train"] = NOT_READ
        elif self.checkpoint:
            values["data"] = values.get("data") or NOT_READ
        return values

    @property
    def steps_to_measure(self):
        """`measure_steps`, or its default: 5 for a pretraining run, 0 for a checkpoint."""
        if self.measure_steps is not None:
            return self.measure_steps
        return 0 if self.checkpoint else 5

    @property
    def classes(self):
        """`num_classes`, or its default (2)."""
        return 2 if self.num_classes is None else self.num_classes


def _flag(name):
    return flag_of(FinetuneConfig if name in FINETUNE_OPTIONS else PretrainConfig, name)
