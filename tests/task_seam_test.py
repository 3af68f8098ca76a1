"""A task defined only in this file plugs into klm through the `klm.tasks` registry.

The toy task is a causal-LM fine-tuning mode with its own name in the run
folder's `config.json`; nothing outside this file knows it. Its run folder
loads, generates raw text (the toy task has no prompt template) and its export
signatures are looked up on the task object.
"""

import pytest

from klm import runs
from klm.pretrained.checkpoint import load_run
from klm.tasks import Task, get_task, register_task, unregister_task


class ToyContinuationTask(Task):
    """A causal-LM fine-tuning mode that generates without a template."""

    name = "toy_continuation"
    model_task = "causal_lm"
    finetune_task = "toy_continuation"
    generates = True
    export_signatures = ("serving_default", "generate")


@pytest.fixture
def toy_task():
    task = register_task(ToyContinuationTask())
    yield task
    unregister_task(task.name)


def _toy_run(tmp_path):
    from klm.serve.testing import make_lm_run

    run_dir = make_lm_run(tmp_path / "run")
    config = runs.read_json(tmp_path / "run" / runs.CONFIG_FILE)
    config.update(get_task("toy_continuation").run_config_fields())
    runs.write_json(tmp_path / "run" / runs.CONFIG_FILE, config)
    return run_dir


def test_toy_run_loads_generates_and_names_its_signatures(toy_task, tmp_path):
    from klm.generate import generate_text, sft_settings

    run = load_run(_toy_run(tmp_path))
    assert runs.run_task(run.config) is toy_task
    assert sft_settings(run) is None  # no template: raw prompts
    texts = generate_text(run, ["the"], max_new_tokens=3, sampler="greedy")
    assert len(texts) == 1 and isinstance(texts[0], str)
    # export's checks read the signatures a SavedModel must serve from the task object
    assert get_task(toy_task.name).export_signatures == ("serving_default", "generate")


def test_an_unregistered_finetune_task_is_a_clear_run_dir_error(tmp_path):
    from klm.errors import RunDirError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runs.write_json(run_dir / runs.CONFIG_FILE, {"task": "causal_lm", "finetune_task": "toy_continuation"})
    with pytest.raises(RunDirError, match=r"no registered task matches.*finetune_task='toy_continuation'"):
        runs.read_run_config(run_dir)
