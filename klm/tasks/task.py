"""The `Task` base class: what varies between klm's training modes."""

import importlib


class Task:
    """One training mode (causal-LM pretraining, classification, SFT, ...).

    A task owns what the rest of klm would otherwise switch on a string for:
    the name it records in a run folder's `config.json`, the model family it
    trains (`model_task`, the `"task"` field that older run folders record),
    whether its models generate text, and the export signatures it serves.
    Subclass it, set the class attributes, and register an instance with
    `klm.tasks.register_task`.

    Args:
        None: a task is stateless; subclasses set class attributes.

    Examples:

    ```python
    from klm.tasks import Task, register_task

    class RegressionTask(Task):
        name = "regression"
        model_task = "classifier"

    register_task(RegressionTask())
    ```
    """

    name = None
    # The `"task"` field of `config.json` (what `klm.pretrained.load_run` validates): the
    # model family, `"causal_lm"` or `"classifier"`. A fine-tuning mode of a causal
    # LM (SFT) keeps `"causal_lm"` and records its own name in `"finetune_task"`.
    model_task = None
    finetune_task = None
    generates = False
    has_labels = False
    export_signatures = ()
    # The `klm finetune --task` value of a fine-tuning mode (`None`: not one).
    cli_name = None
    # The config dataclass and the recipe (a function `recipe(config) ->
    # summary`), as `"module:attribute"` references (the form of Python entry
    # points), imported when asked for: importing them here would put every
    # recipe under the modules that merely ask a run folder what it is.
    config_class_path = None
    recipe_path = None

    def config_class(self):
        """The config dataclass this mode trains from (its fields are the command's flags)."""
        return _resolve(self.config_class_path, self, "config_class_path")

    def recipe(self):
        """The training function: `recipe(config)` trains a run and returns its summary."""
        return _resolve(self.recipe_path, self, "recipe_path")

    def run_config_fields(self):
        """The fields this task writes into a run folder's `config.json`."""
        fields = {"task": self.model_task}
        if self.finetune_task is not None:
            fields["finetune_task"] = self.finetune_task
        return fields

    def prompt_settings(self, config):
        """The prompt template settings generation uses for this task's runs (`None`: raw prompts)."""
        return None

    def matches(self, config):
        """Whether a run folder's `config` (its `config.json`) was made by this task."""
        return config.get("task") == self.model_task and config.get("finetune_task") == self.finetune_task

    def __repr__(self):
        return f"<Task {self.name}>"


def _resolve(reference, task, field):
    """`"module:attribute"` -> the attribute (a task's config class or recipe)."""
    if not reference or ":" not in reference:
        raise ValueError(f"Expected {field} to be 'module:attribute'. Received: {field}={reference!r} on {task!r}")
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
