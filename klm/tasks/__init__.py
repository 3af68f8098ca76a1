"""klm's training modes as registered `Task` objects (see `klm.tasks.Task`)."""

from klm.tasks.causal_lm_task import CausalLMTask
from klm.tasks.classifier_task import ClassifierTask
from klm.tasks.registry import get_task, register_task, task_for_config, task_names, unregister_task
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
    "get_task",
    "register_task",
    "task_for_config",
    "task_names",
    "unregister_task",
]
