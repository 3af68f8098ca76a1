"""The `Task` base class: what varies between klm's training modes."""


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
    # The `"task"` field of `config.json` (what `klm.runs.load_run` validates): the
    # model family, `"causal_lm"` or `"classifier"`. A fine-tuning mode of a causal
    # LM (SFT) keeps `"causal_lm"` and records its own name in `"finetune_task"`.
    model_task = None
    finetune_task = None
    generates = False
    has_labels = False
    export_signatures = ()

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
