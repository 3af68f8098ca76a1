import pytest

from klm.errors import ConfigError
from klm.sft.config import SftConfig


def test_defaults_and_round_trip():
    config = SftConfig(train="train.jsonl")
    assert (config.from_run, config.truncate, config.packing, config.train_on_prompt) == (
        "none",
        "prompt",
        False,
        False,
    )
    assert SftConfig(**config.to_dict()) == config


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"train": ""}, "--train"),
        ({"truncate": "end"}, "--truncate"),
        ({"preset": "huge"}, "--preset"),
        ({"eval_batch_size": 0}, "--eval-batch-size"),
        ({"max_new_tokens": 0}, "--max-new-tokens"),
        ({"eval_generations": -1}, "--eval-generations"),
        ({"freeze_backbone": True}, "--freeze-backbone"),
        ({"lora_alpha": 8.0}, "--lora-alpha"),
        ({"lora_rank": 0}, "--lora-rank"),
    ],
)
def test_bad_values_name_the_flag(kwargs, flag):
    values = dict({"train": "train.jsonl"}, **kwargs)
    with pytest.raises(ConfigError, match=f"Received: {flag}="):
        SftConfig(**values)


def test_freeze_backbone_with_lora_is_fine():
    assert SftConfig(train="t.jsonl", freeze_backbone=True, lora_rank=4).lora_rank == 4
