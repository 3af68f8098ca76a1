"""`EvaluateConfig`: the options of `klm evaluate`, checked before anything is loaded.

Importing this module imports neither Keras nor lm-eval (`klm evaluate --help`
builds its options from it).
"""

import dataclasses

from klm.config import check_fields, flag_of, option
from klm.errors import ConfigError
from klm.evaluation.tasks import HarnessConfig


@dataclasses.dataclass
class EvaluateConfig:
    """Options of `klm evaluate RUN`: `--data FILE` (perplexity, accuracy) or `--tasks NAMES` (lm-eval).

    The `--tasks` options are `HarnessConfig`'s fields; `task_options` holds
    the ones given, and `harness` is the `HarnessConfig` built from them
    (with this config's `batch_size` and `precision`), or `None` for `--data`.

    Args:
        run_dir: RUN: a klm run folder or any checkpoint name
            (`klm.pretrained.resolve`).
        data: the text file (language model) or labelled file (classifier).
        task_options: `HarnessConfig` field name -> value (`tasks`,
            `include_path`, `num_fewshot`, `limit`, `apply_chat_template`,
            `output`): lm-eval tasks instead of `data`.
        json: print the results as JSON.
        batch_size: evaluation batch size (default: the run's; lm-eval: 8).
        text_field, label_field: the fields (JSONL) or columns (CSV/TSV) of `data`.
        seq_len, start_token: pretrained checkpoints: the perplexity window and
            whether each document starts with the start token.
        max_new_tokens: SFT runs: the generation budget per response.
        precision: pretrained checkpoints: the weights' dtype.
        backend: Keras backend.

    Example:

    ```python
    from klm.evaluation.config import EvaluateConfig
    config = EvaluateConfig(run_dir="runs/lm", task_options={"tasks": "hellaswag", "limit": 100})
    config.harness.task_names  # ["hellaswag"]
    ```
    """

    run_dir: str
    data: str | None = option(None, "Text file (language model) or labelled file (classifier).")
    task_options: dict = dataclasses.field(default_factory=dict)
    json: bool = option(False, "Print the results as JSON.")
    batch_size: int | None = option(
        None, "Evaluation batch size.", check="positive", default_help="the run's evaluation batch size; --tasks: 8"
    )
    text_field: str = option("text", "Text field (JSONL) or column (CSV/TSV).")
    label_field: str = option("label", "Label field (JSONL) or column (CSV/TSV).")
    seq_len: int | None = option(
        None,
        "Pretrained checkpoints: window length in tokens.",
        check="[2, inf)",
        default_help="the model's context, at most 1024",
    )
    start_token: bool | None = option(
        None,
        "Pretrained checkpoints: start every document with the tokenizer's start token.",
        flag="--start-token/--no-start-token",
        default_help="as the checkpoint's keras-hub preprocessor does (GPT-2, Llama 3: yes; Qwen: no)",
    )
    max_new_tokens: int | None = option(
        None,
        "SFT runs: tokens to generate at most per response (greedy).",
        check="positive",
        default_help="the run's (64)",
    )
    precision: str | None = None
    backend: str | None = None
    harness: HarnessConfig | None = dataclasses.field(default=None, init=False)

    def __post_init__(self):
        check_fields(self)
        names = [f.name for f in dataclasses.fields(HarnessConfig) if f.name not in ("run_dir", "dtype")]
        unknown = sorted(set(self.task_options) - set(names))
        if unknown:
            raise ConfigError(f"Expected task_options among {', '.join(names)}. Received: {', '.join(unknown)}")
        tasks = self.task_options.get("tasks")
        if (self.data is None) == (tasks is None):
            raise ConfigError(
                "Expected --data FILE (perplexity, accuracy) or --tasks NAMES (lm-eval), one of them. Received: "
                + ("neither" if self.data is None else f"--data={self.data!r} --tasks={tasks!r}")
            )
        if self.data is not None:
            # None and False (`apply_chat_template=False`) are the defaults: not "given".
            given = [
                flag_of(HarnessConfig, name)
                for name in names
                if self.task_options.get(name) is not None and self.task_options.get(name) is not False
            ]
            if given:
                raise ConfigError(
                    f"{', '.join(given)} go with --tasks. Received: --data={self.data!r} with {', '.join(given)}"
                )
            return
        options = dict(self.task_options)
        if self.batch_size is not None:
            options["batch_size"] = self.batch_size
        self.harness = HarnessConfig(run_dir=self.run_dir, dtype=self.precision, **options)
