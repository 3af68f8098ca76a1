"""Sequence classification (`klm finetune --task classify`)."""

from klm.tasks.task import Task

# The SavedModel signatures of an exported classifier.
CLASSIFIER_SIGNATURES = ("serving_default",)


class ClassifierTask(Task):
    """Sequence classification on a pretrained backbone; the run folder keeps `labels.json`.

    Examples:

    ```python
    from klm.tasks import get_task
    get_task("classifier").has_labels  # True
    ```
    """

    name = "classifier"
    model_task = "classifier"
    has_labels = True
    export_signatures = CLASSIFIER_SIGNATURES
    cli_name = "classify"
    config_class_path = "klm.config:FinetuneConfig"
    recipe_path = "klm.finetune:finetune"
