"""Causal-LM pretraining: next-token prediction, generates text."""

from klm.tasks.task import Task

# The SavedModel signatures of an exported causal LM (klm.export checks them).
LM_SIGNATURES = ("serving_default", "score", "generate", "generate_top_k")


class CausalLMTask(Task):
    """Causal language modeling (`klm pretrain`), the model family SFT fine-tunes.

    Examples:

    ```python
    from klm.tasks import get_task
    get_task("causal_lm").generates  # True
    ```
    """

    name = "causal_lm"
    model_task = "causal_lm"
    generates = True
    export_signatures = LM_SIGNATURES
    config_class_path = "klm.config:PretrainConfig"
    recipe_path = "klm.train:pretrain"
