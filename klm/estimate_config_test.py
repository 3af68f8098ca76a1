import pytest

from klm.config import FinetuneConfig, PretrainConfig
from klm.errors import ConfigError
from klm.estimate_config import NOT_READ, EstimateConfig


def test_the_training_config_each_mode_builds():
    pretrain = EstimateConfig(training_options={"data": "t.txt", "preset": "tiny"})
    assert pretrain.training_class is PretrainConfig and not pretrain.checkpoint
    assert pretrain.training_values() == {"data": "t.txt", "preset": "tiny"} and pretrain.steps_to_measure == 5

    finetune = EstimateConfig(training_options={"from_run": "ckpt", "lora_rank": 4, "init_from": None})
    assert finetune.training_class is FinetuneConfig and finetune.checkpoint and finetune.steps_to_measure == 0
    assert finetune.training_values() == {"from_run": "ckpt", "lora_rank": 4, "train": NOT_READ}
    assert finetune.classes == 2 and EstimateConfig(training_options={"from_run": "c"}, num_classes=5).classes == 5

    init = EstimateConfig(training_options={"init_from": "ckpt"}, measure_steps=3)
    assert init.training_class is PretrainConfig and init.training_values()["data"] == NOT_READ
    assert init.steps_to_measure == 3
    PretrainConfig(**init.training_values())  # what `klm estimate --init-from` builds is a valid config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"measure_steps": -1}, "Received: --measure-steps=-1"),
        ({"measure_warmup": 0}, "Received: --measure-warmup=0"),
        ({"training_options": {"from_run": "c"}, "num_classes": 1}, "Expected --num-classes >= 2"),
        ({"training_options": {"freeze_backbone": True}}, "--freeze-backbone needs --from CHECKPOINT"),
        ({"num_classes": 3}, "--num-classes needs --from CHECKPOINT"),
        ({"training_options": {"from_run": "c", "init_from": "c"}}, "exclude each other"),
        ({"training_options": {"from_run": "c", "data": "t.txt"}}, "--data does not apply"),
        ({"training_options": {"init_from": "c", "preset": "tiny"}}, "--preset does not apply"),
        ({"training_options": {"from_run": "none"}}, "Received: --from none"),
        ({"training_options": {"init_from": "c"}, "num_classes": 3}, "Received: --num-classes with --init-from"),
        ({"training_options": {"init_from": "c", "pooling": "mean"}}, "Received: --pooling with --init-from"),
        ({"training_options": {"bogus": 1}}, "Received: ['bogus']"),
    ],
)
def test_bad_options_name_the_flag(kwargs, message):
    with pytest.raises(ConfigError, match="Received") as info:
        EstimateConfig(**kwargs)
    assert message in str(info.value)
