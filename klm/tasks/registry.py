"""The task registry: name -> `Task`, and the run-folder config -> `Task` mapping."""

from klm.errors import KlmError

_TASKS = {}


def register_task(task):
    """Registers `task` (a `klm.tasks.Task` instance) under `task.name`.

    Args:
        task: the task instance; its `name` must be new.

    Returns:
        `task`, so that the call can close a module.

    Examples:

    ```python
    register_task(RegressionTask())
    get_task("regression")
    ```
    """
    if not task.name or not task.model_task:
        raise ValueError(f"A task needs a `name` and a `model_task`. Received: task={task!r}")
    if task.name in _TASKS:
        raise ValueError(f"A task named {task.name!r} is already registered. Received: task={task!r}")
    _TASKS[task.name] = task
    return task


def unregister_task(name):
    """Removes a registered task (tests that register a toy task clean up with it)."""
    _TASKS.pop(name, None)


def task_names():
    """The registered tasks' names, in registration order."""
    return tuple(_TASKS)


def model_families():
    """The model families of the registered tasks: the `"task"` field of `config.json` (`"causal_lm"`, ...)."""
    return tuple(sorted({task.model_task for task in _TASKS.values()}))


def finetune_tasks():
    """The fine-tuning modes (`klm finetune --task NAME`), in registration order."""
    return tuple(task for task in _TASKS.values() if task.cli_name)


def finetune_task(cli_name):
    """The fine-tuning mode `klm finetune --task cli_name` runs.

    Raises:
        KlmError: no fine-tuning mode has that name.
    """
    for task in finetune_tasks():
        if task.cli_name == cli_name:
            return task
    raise KlmError(
        f"Unknown fine-tuning task. Expected one of {[t.cli_name for t in finetune_tasks()]}. "
        f"Received: --task={cli_name!r}"
    )


def get_task(name):
    """The registered task named `name`.

    Raises:
        KlmError: no task has that name.
    """
    if name not in _TASKS:
        raise KlmError(f"Unknown task. Expected one of {list(_TASKS)}. Received: task={name!r}")
    return _TASKS[name]


def task_for_config(config, source="config.json"):
    """The task that wrote a run folder's `config` (its parsed `config.json`).

    Run folders record the model family in `"task"` (`"causal_lm"` or
    `"classifier"`) and an SFT run adds `"finetune_task": "sft"`; this is the
    one place that maps those fields onto a registered task, so older run
    folders keep loading.

    Args:
        config: the parsed `config.json`.
        source: what to name in the error (the file's path).

    Raises:
        KlmError: no registered task matches.
    """
    for task in _TASKS.values():
        if task.matches(config):
            return task
    raise KlmError(
        f"{source}: no registered task matches. Expected task in "
        f"{sorted({t.model_task for t in _TASKS.values()})}. "
        f"Received: task={config.get('task')!r}, finetune_task={config.get('finetune_task')!r}"
    )
