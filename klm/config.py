"""Typed, validated configs for klm's jobs; the CLI flags are their fields.

Each dataclass validates itself in `__post_init__` and names the CLI flag in
its errors, so the library and the command line report mistakes the same
way. `to_dict()` gives the resolved config that is saved in the run folder.
"""

import dataclasses
import math
from typing import Optional

from klm.errors import ConfigError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "auto")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
STRATEGIES = ("auto", "single", "data", "model", "fsdp", "mirrored", "multi-worker")
BATCHINGS = ("contiguous", "shuffled")
TOKENIZERS = ("word", "wordpiece", "sentencepiece", "sentencepiece-bpe", "byte")
SAMPLERS = ("greedy", "top_k", "top_p", "random")


def _flag(name):
    return "--" + name.replace("_", "-")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"Expected {_flag(name)} in {', '.join(choices)}. Received: {_flag(name)}={value!r}")


def _check_positive(name, value, allow_none=False, allow_zero=False):
    if value is None and allow_none:
        return
    bad = value is None or (isinstance(value, float) and math.isnan(value)) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        what = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(f"Expected {_flag(name)} to be {what} number. Received: {_flag(name)}={value!r}")


@dataclasses.dataclass
class TrainingOptions:
    """Options shared by pretraining and fine-tuning."""

    run_dir: str = "runs/default"
    backend: Optional[str] = None
    epochs: int = 1
    max_steps: Optional[int] = None
    batch_size: int = 20
    seq_len: int = 35
    optimizer: str = "sgd"
    lr: float = 5.0
    weight_decay: float = 0.01
    clipnorm: Optional[float] = 0.5
    schedule: str = "step"
    lr_decay: float = 0.95
    warmup_steps: int = 0
    grad_accum: int = 1
    precision: str = "float32"
    jit: str = "auto"
    steps_per_execution: int = 1
    strategy: str = "auto"
    mesh: Optional[str] = None
    cpu_devices: Optional[int] = None
    coordinator: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    seed: int = 0
    log_every: int = 200
    backup_every: int = 200
    eval_every: Optional[int] = None
    eval_steps: Optional[int] = None
    early_stop_patience: Optional[int] = None
    early_stop_min_delta: float = 0.0
    restart: bool = False
    dropout: Optional[float] = None
    verbose: str = "auto"
    lora_rank: Optional[int] = None
    lora_alpha: Optional[float] = None
    lora_targets: str = "attention"

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum", "log_every", "backup_every", "steps_per_execution"):
            _check_positive(name, getattr(self, name))
        _check_positive("max_steps", self.max_steps, allow_none=True)
        for name in ("eval_every", "eval_steps", "early_stop_patience"):
            _check_positive(name, getattr(self, name), allow_none=True)
        _check_positive("early_stop_min_delta", self.early_stop_min_delta, allow_zero=True)
        _check_positive("cpu_devices", self.cpu_devices, allow_none=True)
        _check_positive("num_processes", self.num_processes, allow_none=True)
        _check_positive("process_id", self.process_id, allow_none=True, allow_zero=True)
        if self.num_processes and self.process_id is not None and self.process_id >= self.num_processes:
            raise ConfigError(
                f"Expected --process-id < --num-processes ({self.num_processes}). Received: --process-id={self.process_id}"
            )
        _check_positive("lr", self.lr)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("clipnorm", self.clipnorm, allow_none=True, allow_zero=True)
        _check_positive("warmup_steps", self.warmup_steps, allow_zero=True)
        if self.seq_len is None or self.seq_len <= 1:
            raise ConfigError(f"Expected --seq-len > 1. Received: --seq-len={self.seq_len!r}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"Expected 0 < --lr-decay <= 1. Received: --lr-decay={self.lr_decay!r}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"Expected 0 <= --dropout < 1. Received: --dropout={self.dropout!r}")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_choice("jit", self.jit, ("auto", "on", "off"))
        _check_choice("verbose", self.verbose, ("auto", "bar", "lines", "quiet"))
        _check_positive("lora_rank", self.lora_rank, allow_none=True)
        _check_positive("lora_alpha", self.lora_alpha, allow_none=True)
        if self.lora_alpha is not None and self.lora_rank is None:
            raise ConfigError(f"--lora-alpha needs --lora-rank. Received: --lora-alpha={self.lora_alpha!r}")
        _check_choice("lora_targets", self.lora_targets, ("attention", "qv", "all"))
        if self.backend is not None:
            from klm.backend import BackendError, normalize

            try:
                self.backend = normalize(self.backend)
            except BackendError as e:
                raise ConfigError(str(e).replace("backend=", "--backend="))
        if self.precision == "auto":
            self.resolve_precision()

    def resolve_precision(self, device=None):
        """Replaces `precision="auto"` with a dtype policy (see `klm.backend.resolve_precision`).

        The reason is kept in `self.precision_reason` (not a config field).
        `device` defaults to `klm.backend.describe_device()`.
        """
        from klm import backend as backend_lib

        if self.precision != "auto":
            return self.precision
        device = device if device is not None else backend_lib.describe_device()
        precision, reason = backend_lib.resolve_precision("auto", backend_lib.resolve(self.backend), device)
        self.precision = precision
        self.precision_reason = f"--precision auto -> {precision}: {reason}"
        return precision

    def to_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class DataOptions:
    """How raw text becomes tokens (ignored for prepared folders)."""

    tokenizer: str = "word"
    vocab_size: Optional[int] = None
    min_freq: int = 1
    text_field: str = "text"
    lowercase: bool = False
    strict: bool = False
    scrub_privacy: bool = False

    def __post_init__(self):
        if self.tokenizer is not None:
            _check_choice("tokenizer", self.tokenizer, TOKENIZERS)
        _check_positive("vocab_size", self.vocab_size, allow_none=True)
        _check_positive("min_freq", self.min_freq)


@dataclasses.dataclass
class PretrainConfig(TrainingOptions, DataOptions):
    """Everything `klm pretrain` needs. Defaults reproduce the seed's run.

    Attributes:
        data: training text: a file, glob, folder, prepared folder (from
            `klm prepare`) or dataset name (`wikitext-2`).
        valid: validation file (default: the source's own split, or a
            `valid_fraction` of the training text).
        test: held-out file for a final perplexity.
        preset: model size (`seed`, `tiny`, `small`, `base`).
        batching: `contiguous` (the seed's batchify/bptt) or `shuffled`.
        init_from: continue pretraining from a checkpoint (a klm run folder,
            a keras-hub preset, `hf://ORG/NAME`, `kaggle://...`, or a local
            keras-hub / Transformers folder) with its own tokenizer;
            `preset` and the tokenizer options are then ignored.
    """

    data: str = ""
    valid: Optional[str] = None
    test: Optional[str] = None
    valid_fraction: float = 0.0
    preset: str = "seed"
    batching: str = "contiguous"
    eval_batch_size: int = 10
    init_from: Optional[str] = None

    def __post_init__(self):
        TrainingOptions.__post_init__(self)
        DataOptions.__post_init__(self)
        if not self.data:
            raise ConfigError("Expected --data (a file, glob, folder, prepared folder or dataset name). Received: --data=''")
        from klm.models.presets import PRESETS

        _check_choice("preset", self.preset, tuple(PRESETS))
        _check_choice("batching", self.batching, BATCHINGS)
        _check_positive("eval_batch_size", self.eval_batch_size)
        if not 0 <= self.valid_fraction < 1:
            raise ConfigError(f"Expected 0 <= --valid-fraction < 1. Received: --valid-fraction={self.valid_fraction!r}")


@dataclasses.dataclass
class FinetuneConfig(TrainingOptions, DataOptions):
    """Everything `klm finetune` needs.

    Attributes:
        from_run: a pretrained checkpoint (a klm run folder, a keras-hub
            preset, `hf://ORG/NAME`, `kaggle://...`, a local keras-hub or
            Transformers folder), or `"none"` to train from scratch.
        train / valid / test: labelled data (`LABEL TEXT` lines, CSV/TSV,
            JSONL).
        label_field: label column / field for CSV, TSV and JSONL.
        multi_label: `None` detects it from the data (lists of labels).
        pooling: `last` or `mean`.
        head_dropout: dropout on the pooled vector.
        freeze_backbone: train only the head.
    """

    from_run: str = "none"
    train: str = ""
    # None: the pretrained run's tokenizer (or "word" with --from none).
    tokenizer: Optional[str] = None
    valid: Optional[str] = None
    test: Optional[str] = None
    preset: str = "tiny"
    label_field: str = "label"
    multi_label: Optional[bool] = None
    pooling: str = "last"
    head_dropout: float = 0.1
    freeze_backbone: bool = False
    batch_size: int = 32
    seq_len: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-4
    clipnorm: Optional[float] = 1.0
    schedule: str = "constant"
    epochs: int = 3
    log_every: int = 50

    def __post_init__(self):
        TrainingOptions.__post_init__(self)
        DataOptions.__post_init__(self)
        if not self.train:
            raise ConfigError("Expected --train (labelled data file). Received: --train=''")
        from klm.models.presets import PRESETS

        _check_choice("preset", self.preset, tuple(PRESETS))
        _check_choice("pooling", self.pooling, ("last", "mean"))
        if not 0 <= self.head_dropout < 1:
            raise ConfigError(f"Expected 0 <= --head-dropout < 1. Received: --head-dropout={self.head_dropout!r}")


@dataclasses.dataclass
class GenerateConfig:
    """Options of `klm generate`."""

    run_dir: str
    prompt: str
    max_new_tokens: int = 50
    sampler: str = "top_k"
    temperature: float = 1.0
    top_k: int = 10
    top_p: float = 0.9
    seed: Optional[int] = None
    backend: Optional[str] = None

    def __post_init__(self):
        _check_choice("sampler", self.sampler, SAMPLERS)
        _check_positive("max_new_tokens", self.max_new_tokens)
        _check_positive("temperature", self.temperature)
        _check_positive("top_k", self.top_k)
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"Expected 0 < --top-p <= 1. Received: --top-p={self.top_p!r}")
