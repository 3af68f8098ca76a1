"""`run_tasks`: lm-evaluation-harness tasks on a klm checkpoint (`klm evaluate RUN --tasks ...`).

The CLI is a thin layer over `HarnessConfig` (its fields are the `--tasks`
options of `klm evaluate`; validated when built, errors naming the flag) and
`run_tasks` (which runs `lm_eval.simple_evaluate` with a
`klm.evaluation.harness.KlmLM`). lm-eval is imported only here, and only
once a task is asked for.
"""

import dataclasses
import json

from klm.config import check_fields, option
from klm.errors import ConfigError
from klm.runs import atomic_path

EXTRA_MESSAGE = (
    "lm-eval tasks need the lm-evaluation-harness package, which is klm's optional `eval` extra: "
    'pip install "klm[eval]" (or pip install lm-eval). Received: --tasks without lm-eval installed'
)


@dataclasses.dataclass
class HarnessConfig:
    """Options of `klm evaluate RUN --tasks NAMES`.

    Attributes:
        run_dir: RUN (anything `klm evaluate` takes).
        tasks: comma-separated lm-eval task, group or tag names.
        include_path: a folder of extra task YAML files (local tasks).
        num_fewshot: few-shot examples per prompt (default: each task's own).
        limit: documents per task (an int), or a fraction of them (< 1).
        batch_size: requests per forward pass.
        apply_chat_template: render prompts with the run's chat template.
        max_length: the context in tokens (default: the checkpoint's).
        dtype: pretrained checkpoints: the weights' dtype.
        seed: lm-eval's seeds (few-shot sampling, sampling generation).
        output: where `klm evaluate` also writes the results (JSON); `run_tasks` ignores it.
    """

    run_dir: str
    tasks: str | None = option(
        None,
        "lm-eval tasks, comma-separated (hellaswag,arc_easy,lambada_openai, or tasks of --include-path), "
        "instead of --data.",
    )
    include_path: str | None = option(None, "--tasks: a folder of your own lm-eval task YAML files.")
    num_fewshot: int | None = option(None, "--tasks: few-shot examples.", check="[0, inf)", default_help="each task's")
    limit: float | None = option(
        None, "--tasks: documents per task (N), or a fraction of them (0.1).", check="(0, inf)", default_help="all"
    )
    batch_size: int = option(8, check="positive", cli=False)
    apply_chat_template: bool = option(
        False, "--tasks: render prompts with the run's chat template (SFT runs, checkpoints that ship one)."
    )
    max_length: int | None = option(None, check="[2, inf)", cli=False)
    dtype: str | None = None
    seed: int = 0
    output: str | None = option(None, "--tasks: also write lm-eval's results dict (JSON) here.")

    def __post_init__(self):
        if self.batch_size is None:
            self.batch_size = 8
        check_fields(self)
        names = [name.strip() for name in str(self.tasks or "").split(",") if name.strip()]
        if not names:
            raise ConfigError(f"Expected one or more task names, comma-separated. Received: --tasks={self.tasks!r}")
        self.task_names = names
        if self.limit is not None and self.limit >= 1:
            if self.limit != int(self.limit):
                raise ConfigError(
                    f"Expected --limit as a whole number of documents or a fraction below 1. "
                    f"Received: --limit={self.limit}"
                )
            self.limit = int(self.limit)
        if self.include_path is not None:
            from pathlib import Path

            if not Path(self.include_path).is_dir():
                raise ConfigError(
                    f"Expected a folder of task YAML files. Received: --include-path={self.include_path!r} "
                    "(not a folder)"
                )


def require_lm_eval():
    """Raises `ConfigError` naming the `eval` extra when lm-eval is not installed."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ConfigError(EXTRA_MESSAGE) from None


def task_manager(include_path=None):
    """lm-eval's `TaskManager` (its built-in tasks, plus `include_path`'s)."""
    require_lm_eval()
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path) if include_path else TaskManager()


def check_task_names(manager, names):
    """Raises `ConfigError` with lm-eval's message for names it does not know."""
    missing = [name for name in names if not manager.match_tasks([name])]
    if missing:
        raise ConfigError(
            f"Tasks not found: {', '.join(missing)} (lm-eval's `lm-eval ls tasks` lists the tasks it knows; "
            f"--include-path DIR adds a folder of your own task YAML files). Received: --tasks={','.join(names)}"
        )


def run_tasks(config, model=None):
    """Runs `config.tasks` on the checkpoint with lm-eval; returns lm-eval's results dict.

    Args:
        config: a `HarnessConfig`.
        model: an already built `KlmLM` (default: one over `config.run_dir`).

    Returns:
        lm-eval's `simple_evaluate` results (`results`, `versions`,
        `n-shot`, `configs`, ... ; `samples` dropped), plus `klm` (the
        checkpoint, backend, batch size, chat template and requests/s).
    """
    import time

    require_lm_eval()
    manager = task_manager(config.include_path)
    check_task_names(manager, config.task_names)
    import lm_eval

    # Here, not at the top: `klm.evaluation.harness` imports lm-eval, an optional extra, and this
    # module must import without it so that `require_lm_eval` can name the extra.
    from klm.evaluation.harness import KlmLM

    if model is None:
        model = KlmLM(
            config.run_dir,
            batch_size=config.batch_size,
            max_length=config.max_length,
            dtype=config.dtype,
            seed=config.seed,
        )
    counter = _RequestCounter(model)
    started = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=model,
        tasks=config.task_names,
        num_fewshot=config.num_fewshot,
        limit=config.limit,
        task_manager=manager,
        apply_chat_template=config.apply_chat_template,
        random_seed=config.seed,
        numpy_random_seed=config.seed,
        torch_random_seed=config.seed,
        fewshot_random_seed=config.seed,
        log_samples=False,
    )
    seconds = time.perf_counter() - started
    counter.restore()
    results.pop("samples", None)
    results["klm"] = {
        "run_dir": str(config.run_dir),
        "checkpoint": model.checkpoint.source,
        "backend": model.device,
        "batch_size": model.batch_size,
        "max_length": model.max_length,
        "add_bos_token": bool(model.add_bos_token),
        # The template the prompts were rendered with (lm-eval logs it only to its tracker).
        "chat_template": model.chat_template(True) if config.apply_chat_template else None,
        "requests": counter.requests,
        "seconds": seconds,
        "requests_per_second": counter.requests / seconds if seconds > 0 else None,
    }
    return results


class _RequestCounter:
    """Counts the requests lm-eval hands the model (for requests/s)."""

    def __init__(self, model):
        self.model, self.requests, self.saved = model, 0, {}
        for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
            method = getattr(model, name)
            self.saved[name] = method

            def counted(requests, *args, _method=method, **kwargs):
                self.requests += len(requests)
                return _method(requests, *args, **kwargs)

            setattr(model, name, counted)

    def restore(self):
        for name in self.saved:
            delattr(self.model, name)


def results_json(results):
    """lm-eval's results dict as JSON text (what `--json` prints and `--output` writes)."""
    from lm_eval.utils import handle_non_serializable

    return json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False)


def format_tables(results):
    """lm-eval's results table (and its groups table), as `lm_eval` prints them."""
    from lm_eval.utils import make_table

    text = make_table(results)
    if "groups" in results:
        text += "\n" + make_table(results, "groups")
    info = results.get("klm", {})
    if info:
        text += (
            f"\nklm: {info['run_dir']} on {info['backend']}, batch size {info['batch_size']}, "
            f"{info['requests']} requests in {info['seconds']:.1f} s ({info['requests_per_second']:.2f} requests/s)"
        )
    return text


def write_output(results, path):
    """Writes `results_json(results)` to `path` atomically (a temporary file renamed at the end)."""

    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(results_json(results) + "\n")
