import pytest

from klm.errors import KlmError
from klm.tasks import Task, get_task, register_task, task_for_config, task_names, unregister_task


def test_the_three_tasks_are_registered():
    assert task_names()[:3] == ("causal_lm", "classifier", "sft")
    assert get_task("causal_lm").generates and get_task("sft").generates
    assert not get_task("classifier").generates and get_task("classifier").has_labels


def test_unknown_task_names_the_choices():
    with pytest.raises(KlmError, match=r"Expected one of \['causal_lm', 'classifier', 'sft'.*Received: task='nope'"):
        get_task("nope")


@pytest.mark.parametrize(
    "config, name",
    [
        ({"task": "causal_lm"}, "causal_lm"),
        ({"task": "classifier"}, "classifier"),
        ({"task": "causal_lm", "finetune_task": "sft"}, "sft"),
    ],
)
def test_old_run_folder_configs_map_onto_tasks(config, name):
    assert task_for_config(config).name == name
    assert get_task(name).run_config_fields() == config


def test_unmatched_config_names_the_file_and_fields():
    with pytest.raises(KlmError, match=r"runs/x/config.json.*Received: task='causal_lm', finetune_task='dpo'"):
        task_for_config({"task": "causal_lm", "finetune_task": "dpo"}, source="runs/x/config.json")


def test_register_refuses_duplicates_and_nameless_tasks():
    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("sft"))
    with pytest.raises(ValueError, match="needs a `name`"):
        register_task(Task())


def test_a_registered_task_is_found_and_removed():
    class Toy(Task):
        name = "toy"
        model_task = "causal_lm"
        finetune_task = "toy"

    register_task(Toy())
    try:
        assert task_for_config({"task": "causal_lm", "finetune_task": "toy"}).name == "toy"
    finally:
        unregister_task("toy")
    assert "toy" not in task_names()
