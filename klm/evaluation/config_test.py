import pytest

from klm.errors import ConfigError
from klm.evaluation.config import EvaluateConfig


def test_data_builds_no_harness_and_tasks_build_one(tmp_path):
    assert EvaluateConfig(run_dir="r", data="d.txt").harness is None
    config = EvaluateConfig(run_dir="r", task_options={"tasks": "a, b", "limit": 3}, batch_size=4, precision="bfloat16")
    assert config.harness.task_names == ["a", "b"] and config.harness.limit == 3
    assert config.harness.batch_size == 4 and config.harness.dtype == "bfloat16"
    assert EvaluateConfig(run_dir="r", task_options={"tasks": "a"}).harness.batch_size == 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "Received: neither"),
        ({"data": "d.txt", "task_options": {"tasks": "a"}}, "one of them. Received: --data='d.txt' --tasks='a'"),
        ({"data": "d.txt", "task_options": {"limit": 3}}, "--limit go with --tasks. Received: --data='d.txt'"),
        ({"data": "d.txt", "task_options": {"apply_chat_template": True}}, "--apply-chat-template go with --tasks"),
        ({"data": "d.txt", "batch_size": 0}, "Received: --batch-size=0"),
        ({"data": "d.txt", "seq_len": 1}, "Expected --seq-len >= 2. Received: --seq-len=1"),
        ({"data": "d.txt", "max_new_tokens": -1}, "Received: --max-new-tokens=-1"),
        ({"task_options": {"tasks": " , "}}, "Received: --tasks=' , '"),
        ({"task_options": {"tasks": "a", "limit": 0}}, "Expected --limit > 0. Received: --limit=0"),
        ({"task_options": {"tasks": "a", "limit": 2.5}}, "whole number of documents"),
        ({"task_options": {"tasks": "a", "num_fewshot": -1}}, "Expected --num-fewshot >= 0"),
        ({"task_options": {"tasks": "a", "include_path": "/no/such/dir"}}, "--include-path='/no/such/dir'"),
        ({"task_options": {"tasks": "a", "bogus": 1}}, "Received: bogus"),
    ],
)
def test_bad_options_name_the_flag(kwargs, message):
    with pytest.raises(ConfigError, match="Received") as info:
        EvaluateConfig(run_dir="r", **kwargs)
    assert message in str(info.value)


def test_a_default_given_with_data_is_not_a_task_option():
    # `klm evaluate --data F` never passes them, but a library caller may spell the defaults out.
    config = EvaluateConfig(run_dir="r", data="d.txt", task_options={"apply_chat_template": False, "limit": None})
    assert config.harness is None
