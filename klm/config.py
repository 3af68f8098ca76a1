"""Typed, validated configs for klm's jobs; the CLI flags are their fields.

Each field that is a command-line option is declared with `option(default,
help, choices=..., check=...)`: its default, its choices, its help text and
its checks live there and nowhere else. `klm.cli.options` builds the click
options of every klm command but `klm prepare` from such fields (this
module's configs; `EvaluateConfig`, `HarnessConfig`, `EstimateConfig`,
`ExportOptions`, `ServeConfig`, `QuantizeConfig` beside their modules; the
help ends with the field's default), and
`__post_init__` checks every field against them (`check_fields`), naming the
CLI flag in its errors, so the library and the command line report mistakes
the same way. `to_dict()` gives the resolved config that is saved in the run
folder.
"""

import dataclasses
import functools
import math
import os
import typing

from klm import backend as backend_lib
from klm.backend import BackendError, normalize
from klm.errors import ConfigError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "bfloat16", "auto")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
STRATEGIES = ("auto", "single", "data", "mirrored", "model", "fsdp", "multi-worker")
BATCHINGS = ("contiguous", "shuffled")
TOKENIZERS = ("word", "wordpiece", "sentencepiece", "sentencepiece-bpe", "byte")
# SentencePiece's model types: `--tokenizer sentencepiece` trains "unigram", `sentencepiece-bpe` "bpe".
SENTENCEPIECE_MODEL_TYPES = ("unigram", "bpe")
SAMPLERS = ("greedy", "top_k", "top_p", "random")
JIT_MODES = ("auto", "on", "off")
VERBOSITIES = ("auto", "bar", "lines", "quiet")
LORA_TARGETS = ("attention", "qv", "all")
POOLINGS = ("last", "mean")
# The names of `klm.models.presets.PRESETS`, kept here so that checking a
# config and `klm pretrain --help` import no Keras (a test keeps them equal).
PRESET_NAMES = ("seed", "tiny", "small", "base")


def option(default, help=None, *, choices=None, check=None, required=None, flag=None, default_help=None, cli=True):
    """A config field that is also a command-line option.

    Args:
        default: the field's default, which is also the option's.
        help: the option's help, without the default (the CLI appends it).
            A subclass that re-declares the field may leave it out to keep
            its base's.
        choices: the allowed values (a `click.Choice`; checked by
            `check_fields`).
        check: `"positive"`, `"non_negative"`, or an interval such as
            `"(0, 1]"`, `"[0, 1)"` or `"(1, inf)"`.
        required: for a field that must be set: what it names, for the
            error (`"Expected --data (what). Received: --data=''"`).
        flag: the flag when it is not `--field-name` (`"--from"`), or
            `"--on/--off"` for a two-way boolean switch.
        default_help: how the help states the default when the value says
            little (`"detected from the data"`).
        cli: `False` for a checked field that has no flag.
    """
    metadata = dict(
        help=help, choices=choices, check=check, required=required, flag=flag, default_help=default_help, cli=cli
    )
    return dataclasses.field(default=default, metadata={k: v for k, v in metadata.items() if v is not None})


@functools.cache
def field_spec(cls, name):
    """The `option(...)` settings of field `name` of dataclass `cls`.

    A subclass that only changes a default (`lr: float = 3e-4`) keeps its
    base's help, choices and checks; one that re-declares the field with
    `option(...)` replaces the settings it names.
    """
    spec = {}
    for klass in reversed(cls.__mro__):
        declared = vars(klass).get("__dataclass_fields__", {})
        if name in declared:
            spec.update(declared[name].metadata)
    return spec


def flag_of(cls, name):
    """The command-line flag of field `name` (`"--multi-label"` for `--multi-label/--single-label`)."""
    return field_spec(cls, name).get("flag", _flag(name)).split("/")[0]


def check_fields(config):
    """Checks each field of `config` against its `option(...)`: type, required, choices, range. Errors name the flag.

    Values of the field's declared type (`bool`, `int`, `float`, `str`) are
    converted here, once, whatever they came from: click has already
    converted flags, but a `--config` file or a library caller may give
    strings (PyYAML reads `3e-4` as a string, and `"no"` is a string that
    Python finds true). So `lr: 3e-4` becomes 0.0003, `lowercase: "no"`
    becomes False, and `max_steps: "three"` is an error naming the flag.
    """
    cls = type(config)
    for field in dataclasses.fields(config):
        spec = field_spec(cls, field.name)
        value = coerce_value(cls, field, getattr(config, field.name))
        object.__setattr__(config, field.name, value)
        if spec.get("required") and not value:
            flag = flag_of(cls, field.name)
            raise ConfigError(f"Expected {flag} ({spec['required']}). Received: {flag}={value!r}")
        if value is None and (field.default is None or type(None) in typing.get_args(field.type)):
            continue
        if "choices" in spec:
            _check_choice(field.name, value, spec["choices"])
        check = spec.get("check")
        if check in ("positive", "non_negative"):
            _check_positive(field.name, value, allow_zero=check == "non_negative")
        elif check:
            _check_interval(field.name, value, check)


def _flag(name):
    return "--" + name.replace("_", "-")


_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def _scalar_type(annotation):
    """`int` for `int` and `int | None`; `None` for a field that is not a plain scalar."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    kind = args[0] if len(args) == 1 else annotation
    return kind if kind in (bool, int, float, str) else None


def coerce_value(cls, field, value):
    """`value` converted to `field`'s declared scalar type, or a `ConfigError` naming the flag."""
    kind = _scalar_type(field.type)
    if value is None or kind is None or (type(value) is kind):
        return value
    flag = flag_of(cls, field.name)
    text = value.strip().lower() if isinstance(value, str) else None
    if kind is bool:
        if text in _TRUE_WORDS or (type(value) is int and value == 1):
            return True
        if text in _FALSE_WORDS or (type(value) is int and value == 0):
            return False
        raise ConfigError(f"Expected {flag} to be true or false. Received: {flag}={value!r}")
    if kind is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"Expected {flag} to be a string. Received: {flag}={value!r}")
    if isinstance(value, bool):
        number = None
    elif text is not None:
        try:
            number = float(text)
        except ValueError:
            number = None
    else:
        number = value if isinstance(value, (int, float)) else None
    if kind is float and number is not None:
        return float(number)
    if kind is int and number is not None and math.isfinite(number) and float(number).is_integer():
        return int(number)
    what = "an integer" if kind is int else "a number"
    raise ConfigError(f"Expected {flag} to be {what}. Received: {flag}={value!r}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"Expected {_flag(name)} in {', '.join(choices)}. Received: {_flag(name)}={value!r}")


def _check_positive(name, value, allow_zero=False):
    bad = value is None or (isinstance(value, float) and math.isnan(value))
    bad = bad or value < 0 or (value == 0 and not allow_zero)
    if bad:
        what = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(f"Expected {_flag(name)} to be {what} number. Received: {_flag(name)}={value!r}")


def _check_interval(name, value, interval):
    """`interval` like `"(0, 1]"`: round brackets leave the end out; `inf` has no upper end."""
    low, high = (part.strip() for part in interval[1:-1].split(","))
    low_open, high_open = interval[0] == "(", interval[-1] == ")"
    try:
        ok = (float(low) < value if low_open else float(low) <= value) and (
            value < float(high) if high_open else value <= float(high)
        )
    except TypeError:
        ok = False
    if not ok:
        flag = _flag(name)
        if high == "inf":
            expected = f"{flag} {'>' if low_open else '>='} {low}"
        else:
            expected = f"{low} {'<' if low_open else '<='} {flag} {'<' if high_open else '<='} {high}"
        raise ConfigError(f"Expected {expected}. Received: {flag}={value!r}")


@dataclasses.dataclass
class TrainingOptions:
    """Options shared by pretraining and fine-tuning."""

    run_dir: str = option("runs/default", "Run folder (created; re-running the same command resumes it).")
    # `--backend` is `klm.cli.common.backend_option`: it is applied while the flags are parsed.
    backend: str | None = None
    epochs: int = option(1, "Passes over the training data.", check="positive")
    max_steps: int | None = option(None, "Stop after this many optimizer steps in total.", check="positive")
    batch_size: int = option(20, "Global batch size.", check="positive")
    seq_len: int = option(35, "Tokens per sequence (the reference's bptt).", check="(1, inf)")
    optimizer: str = option("sgd", "Optimizer.", choices=OPTIMIZERS)
    lr: float = option(5.0, "Peak learning rate.", check="positive")
    weight_decay: float = option(0.01, "AdamW weight decay.", check="non_negative")
    clipnorm: float | None = option(0.5, "Global gradient-norm clipping (0: off).", check="non_negative")
    schedule: str = option(
        "step",
        "LR schedule: step (x lr-decay per epoch, the reference's StepLR), cosine (warm-up + cosine), constant.",
        choices=SCHEDULES,
    )
    lr_decay: float = option(0.95, "Per-epoch LR factor for --schedule step.", check="(0, 1]")
    warmup_steps: int = option(0, "Linear warm-up steps for --schedule cosine.", check="non_negative")
    grad_accum: int = option(1, "Accumulate gradients over this many batches per step.", check="positive")
    precision: str = option(
        "float32",
        "Compute precision (bfloat16: bf16 weights too, halves a big checkpoint's "
        "memory). auto: mixed_bfloat16 where the device has bf16 units and the backend's bf16 "
        "step measures faster there, else float32 (the choice and why are logged).",
        choices=PRECISIONS,
    )
    jit: str = option("auto", "XLA compilation (TF/JAX).", choices=JIT_MODES)
    steps_per_execution: int = option(1, "Training steps per compiled call (fewer host round trips).", check="positive")
    strategy: str = option(
        "auto",
        "Distribution: auto = all local accelerators (TF Mirrored / JAX DataParallel), single = one device.",
        choices=STRATEGIES,
    )
    mesh: str | None = option(None, "Device mesh for --strategy model/fsdp (JAX), e.g. data=2,model=2.")
    cpu_devices: int | None = option(
        None, "Split the CPU into N logical devices (data parallelism without accelerators; JAX/TF).", check="positive"
    )
    coordinator: str | None = option(None, "HOST:PORT of process 0, for multi-process JAX training.")
    num_processes: int | None = option(None, "Number of processes in a multi-process JAX run.", check="positive")
    process_id: int | None = option(None, "This process's rank (0 .. num-processes-1).", check="non_negative")
    seed: int = option(0, "Random seed (weights, shuffling, dropout).")
    log_every: int = option(200, "Log a line every N steps.", check="positive")
    backup_every: int = option(
        200, "Write the resume backup every N optimizer steps (a kill loses at most these).", check="positive"
    )
    eval_every: int | None = option(
        None,
        "Validate every N optimizer steps (and at each epoch end); best.keras is chosen by step.",
        check="positive",
    )
    eval_steps: int | None = option(None, "Validate on the first K batches only.", check="positive", default_help="all")
    early_stop_patience: int | None = option(
        None,
        "Stop after P validations without improvement (needs validation data).",
        check="positive",
        default_help="off",
    )
    early_stop_min_delta: float = option(
        0.0, "Smallest drop of the validation loss that counts as an improvement.", check="non_negative"
    )
    restart: bool = option(False, "Delete the run folder's old run and start over.")
    dropout: float | None = option(None, "Override the preset's dropout.", check="[0, 1)")
    verbose: str = option(
        "auto", "Progress display: bar (Keras), lines (plain log lines), auto = bar on a terminal.", choices=VERBOSITIES
    )
    lora_rank: int | None = option(
        None, "Train LoRA adapters of this rank (and the head) instead of the whole backbone.", check="positive"
    )
    lora_alpha: float | None = option(
        None, "LoRA scale numerator (updates x alpha/rank).", check="positive", default_help="the rank"
    )
    lora_targets: str = option(
        "attention",
        "Layers that get adapters: attention (q, k, v, output), qv, or all (+ feed-forward).",
        choices=LORA_TARGETS,
    )
    attention_dropout: float | None = option(
        None,
        "Dropout on the attention probabilities, apart from --dropout (residual and feed-forward).",
        check="[0, 1)",
        default_help="the preset's",
    )
    remat: bool = option(
        False,
        "Recompute each decoder block's activations in the backward pass (Keras RematScope; torch backend): "
        "less memory, more compute.",
    )

    def __post_init__(self):
        check_fields(self)  # every field, the data and command fields of the subclasses too
        if self.num_processes and self.process_id is not None and self.process_id >= self.num_processes:
            raise ConfigError(
                f"Expected --process-id < --num-processes ({self.num_processes}). "
                f"Received: --process-id={self.process_id}"
            )
        if self.lora_alpha is not None and self.lora_rank is None:
            raise ConfigError(f"--lora-alpha needs --lora-rank. Received: --lora-alpha={self.lora_alpha!r}")
        self._check_run_dir_is_not_the_source()
        if self.backend is not None:
            try:
                self.backend = normalize(self.backend)
            except BackendError as e:
                raise ConfigError(str(e).replace("backend=", "--backend=")) from None
        if self.precision == "auto":
            self.resolve_precision()

    def _check_run_dir_is_not_the_source(self):
        """Refuses `--run-dir` naming the folder the run starts from: training there would overwrite it."""
        for name in ("from_run", "init_from"):
            source = getattr(self, name, None)
            if not source or source == "none" or not os.path.isdir(source):
                continue
            if os.path.realpath(source) == os.path.realpath(self.run_dir):
                flag = flag_of(type(self), name)
                raise ConfigError(
                    f"Expected --run-dir to be another folder than {flag}: the run would write its checkpoints, "
                    f"config and tokenizer over the model it starts from. Choose a new --run-dir. "
                    f"Received: --run-dir={self.run_dir!r}, {flag}={source!r}"
                )

    def resolve_precision(self, device=None):
        """Replaces `precision="auto"` with a dtype policy (see `klm.backend.resolve_precision`).

        The reason is kept in `self.precision_reason` (not a config field).
        `device` defaults to `klm.backend.describe_device()`.
        """

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

    # None (fine-tuning): the tokenizer of the run it starts from.
    tokenizer: str | None = option(
        "word",
        "Tokenizer to train on the data.",
        choices=TOKENIZERS,
        default_help="word (the reference's basic_english)",
    )
    vocab_size: int | None = option(
        None, "Vocabulary size (word: keep the N most frequent).", check="positive", default_help="all"
    )
    min_freq: int = option(1, "Word tokenizer: drop words seen fewer times.", check="positive")
    text_field: str = option("text", "Text field (JSONL) or column (CSV/TSV).")
    lowercase: bool = option(False, "Lower-case text before tokenizing.")
    strict: bool = option(False, "Fail on invalid UTF-8, naming file and line (default: replace and count).")
    scrub_privacy: bool = option(
        False, "Replace e-mails, URLs, IPs, phone and card numbers, secrets with placeholders."
    )

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass
class PretrainConfig(TrainingOptions, DataOptions):
    """Everything `klm pretrain` needs. Defaults reproduce the reference's run.

    Each field is a `klm pretrain` flag; its help (`klm pretrain --help`) is
    in its `option(...)` below. `init_from` continues pretraining a
    checkpoint with its own tokenizer; `preset` and the tokenizer options are
    then ignored.
    """

    data: str = option(
        "",
        "Training text: file, glob, folder, prepared folder (klm prepare) or dataset name (wikitext-2).",
        required="a file, glob, folder, prepared folder or dataset name",
    )
    valid: str | None = option(None, "Validation file (default: the source's valid split, or --valid-fraction).")
    test: str | None = option(None, "Held-out file for the final test perplexity.")
    valid_fraction: float = option(
        0.0, "Hold out this fraction of the training text when there is no validation file.", check="[0, 1)"
    )
    preset: str = option("seed", "Model size.", choices=PRESET_NAMES)
    batching: str = option(
        "contiguous", "contiguous = the reference's batchify/bptt; shuffled = random windows.", choices=BATCHINGS
    )
    eval_batch_size: int = option(
        10, "Batch size for validation/test.", check="positive", default_help="10 (the reference's)"
    )
    init_from: str | None = option(
        None,
        "Continue pretraining a checkpoint (klm run, keras-hub preset, "
        "hf://ORG/NAME, kaggle://..., local folder) with its own tokenizer; --preset "
        "and tokenizer options are then unused.",
    )


@dataclasses.dataclass
class FineTuningOptions(TrainingOptions, DataOptions):
    """What `klm finetune` shares between `--task classify` (`FinetuneConfig`) and `--task sft` (`SftConfig`):
    the checkpoint it starts from, the data files, and fine-tuning's training defaults."""

    from_run: str = option(
        "none",
        "Start from: a klm run folder, a keras-hub preset (gpt2_base_en), hf://ORG/NAME, "
        "kaggle://..., a local keras-hub or Transformers folder; or 'none' to train from scratch.",
        flag="--from",
    )
    train: str = option(
        "",
        "Training data: labelled text ('LABEL TEXT' lines, CSV/TSV or JSONL); with --task sft, "
        "prompt -> response records (JSONL prompt/response, Alpaca or chat messages; TSV/CSV).",
        required="labelled data file",
    )
    valid: str | None = option(None, "Validation data, like --train.")
    test: str | None = option(None, "Test data, like --train (reported at the end).")
    tokenizer: str | None = option(None, default_help="the --from run's; word with --from none")
    preset: str = option("tiny", "Model size with --from none.", choices=PRESET_NAMES)
    freeze_backbone: bool = option(
        False, "Train only the classifier head (--task sft: only the LoRA adapters, so it needs --lora-rank)."
    )
    batch_size: int = 32
    seq_len: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-4
    clipnorm: float | None = 1.0
    schedule: str = "constant"
    epochs: int = 3
    log_every: int = 50


@dataclasses.dataclass
class FinetuneConfig(FineTuningOptions):
    """Everything `klm finetune` (`--task classify`) needs: a classifier head on labelled text.

    `multi_label=None` detects it from the data (lists of labels). Each
    field is a `klm finetune` flag; its help is in its `option(...)`.
    """

    label_field: str = option("label", "Label field (JSONL) or column (CSV/TSV).")
    multi_label: bool | None = option(
        None,
        "Multi-label (sigmoid) or single-label (softmax) head.",
        flag="--multi-label/--single-label",
        default_help="detected from the data",
    )
    pooling: str = option("last", "Pool the last real token or the mean.", choices=POOLINGS)
    head_dropout: float = option(0.1, "Dropout before the classifier head.", check="[0, 1)")


def check_utf8_text(text, name):
    """Raises `ConfigError` unless `text` is valid Unicode text that encodes to UTF-8.

    A prompt read from the command line or stdin in bytes that are not UTF-8
    reaches Python as lone surrogates (`surrogateescape`); the tokenizers
    cannot encode those.

    Args:
        text: the string to check.
        name: what it is, for the error (`"--prompt"`, `"stdin line 3"`).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start : e.end].encode("utf-8", "surrogateescape" if _escaped(text[e.start : e.end]) else "replace")
        raise ConfigError(
            f"Expected {name} to be UTF-8 text; it holds bytes that are not UTF-8 ({bad!r} at character {e.start}). "
            f"Re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8). Received: {name}={text[:80]!r}"
        ) from None
    return text


def _escaped(text):
    return all(0xDC80 <= ord(c) <= 0xDCFF for c in text)


@dataclasses.dataclass
class GenerateConfig:
    """Options of `klm generate`."""

    run_dir: str
    prompt: str | None = option(
        None, "Text to continue (an SFT run: the user's prompt; its template is applied).", default_help="none"
    )
    max_new_tokens: int = option(50, "Tokens to generate at most.", check="positive")
    sampler: str = option("top_k", "Decoding strategy.", choices=SAMPLERS)
    temperature: float = option(1.0, "Softmax temperature.", check="positive")
    top_k: int = option(10, "k for --sampler top_k.", check="positive")
    top_p: float = option(0.9, "p for --sampler top_p.", check="(0, 1]")
    seed: int | None = option(None, "Random seed for sampling.")
    raw: bool = option(False, "SFT runs: use the prompt as is, without the run's template.")
    chat: bool = option(
        False,
        "SFT runs: a conversation: read one user turn per line from stdin, answer each (the conversation so far "
        "is kept), until end of input.",
    )
    system: str | None = option(None, "SFT runs: a system message for the template.")
    stop: list | None = option(
        None, "Stop a response at this string (repeatable); end-of-text always stops.", default_help="none"
    )
    backend: str | None = None

    def __post_init__(self):
        check_fields(self)
        if self.prompt is None and not self.chat:
            raise ConfigError("Expected --prompt TEXT (or --chat to read turns from stdin). Received: no --prompt")
        if self.chat and self.prompt is not None:
            raise ConfigError("--chat reads the prompts from stdin. Received: --chat with --prompt")
        for flag, value in (("--prompt", self.prompt), ("--system", self.system)):
            if value is not None:
                check_utf8_text(value, flag)
        self.stop = list(self.stop or ())
