"""Supervised fine-tuning of a causal LM on prompt/response pairs (`klm finetune --task sft`)."""

from klm.tasks.causal_lm_task import LM_SIGNATURES
from klm.tasks.task import Task


class SFTTask(Task):
    """SFT: a causal LM trained on templated prompts; generation uses the run's template.

    Examples:

    ```python
    from klm.tasks import get_task
    get_task("sft").run_config_fields()  # {"task": "causal_lm", "finetune_task": "sft"}
    ```
    """

    name = "sft"
    model_task = "causal_lm"
    finetune_task = "sft"
    generates = True
    export_signatures = LM_SIGNATURES
    cli_name = "sft"
    config_class_path = "klm.sft.config:SftConfig"
    recipe_path = "klm.sft.recipe:finetune_sft"

    def prompt_settings(self, config):
        """The `sft` section (template, end-of-text) of an SFT run's `config.json`."""
        return config.get("sft")
