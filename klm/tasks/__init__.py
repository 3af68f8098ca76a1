"""klm's training modes as registered `Task` objects (see `klm.tasks.Task`)."""

from klm.tasks.causal_lm_task import CausalLMTask
from klm.tasks.classifier_task import ClassifierTask
from klm.tasks.registry import (
    finetune_task,
    finetune_tasks,
    get_task,
    model_families,
    register_task,
    task_for_config,
    task_names,
    unregister_task,
)
from klm.tasks.sft_task import SFTTask
from klm.tasks.task import Task

register_task(CausalLMTask())
register_task(ClassifierTask())
register_task(SFTTask())

__all__ = [
    "CausalLMTask",
    "ClassifierTask",
    "SFTTask",
    "Task",
    "finetune_task",
    "finetune_tasks",
    "get_task",
    "model_families",
    "register_task",
    "task_for_config",
    "task_names",
    "unregister_task",
]
