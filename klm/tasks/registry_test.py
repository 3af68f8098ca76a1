import pytest

from klm.errors import KlmError
from klm.tasks import (
    Task,
    finetune_task,
    finetune_tasks,
    get_task,
    model_families,
    register_task,
    task_for_config,
    task_names,
    unregister_task,
)


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


def test_finetune_modes_name_their_config_and_recipe():
    from klm.config import FinetuneConfig
    from klm.finetune import finetune
    from klm.sft.config import SftConfig
    from klm.sft.recipe import finetune_sft

    assert [t.cli_name for t in finetune_tasks()] == ["classify", "sft"]
    assert finetune_task("sft").config_class() is SftConfig and finetune_task("sft").recipe() is finetune_sft
    assert finetune_task("classify").config_class() is FinetuneConfig
    assert finetune_task("classify").recipe() is finetune
    with pytest.raises(KlmError, match=r"Expected one of \['classify', 'sft'\]. Received: --task='regress'"):
        finetune_task("regress")


def test_a_malformed_recipe_reference_names_the_field():
    class Broken(Task):
        name = "broken"
        model_task = "causal_lm"
        recipe_path = "klm.train.pretrain"

    with pytest.raises(ValueError, match="Expected recipe_path to be 'module:attribute'"):
        Broken().recipe()


def test_model_families_are_what_config_json_records():
    assert model_families() == ("causal_lm", "classifier")
