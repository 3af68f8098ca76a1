import re

import pytest

from klm.config import FinetuneConfig, GenerateConfig, PretrainConfig, field_spec, flag_of
from klm.errors import ConfigError


def test_a_subclass_default_keeps_its_bases_help_and_checks():
    assert FinetuneConfig(train="t").lr == 3e-4
    assert field_spec(FinetuneConfig, "lr") == field_spec(PretrainConfig, "lr")
    assert field_spec(FinetuneConfig, "tokenizer")["choices"] == field_spec(PretrainConfig, "tokenizer")["choices"]
    assert flag_of(FinetuneConfig, "from_run") == "--from"
    assert flag_of(FinetuneConfig, "multi_label") == "--multi-label"


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (PretrainConfig, {"data": ""}, "Expected --data (a file, glob"),
        (PretrainConfig, {"seq_len": 1}, "Expected --seq-len > 1. Received: --seq-len=1"),
        (PretrainConfig, {"lr_decay": 0.0}, "Expected 0 < --lr-decay <= 1. Received: --lr-decay=0.0"),
        (PretrainConfig, {"dropout": 1.0}, "Expected 0 <= --dropout < 1. Received: --dropout=1.0"),
        (PretrainConfig, {"valid_fraction": float("nan")}, "--valid-fraction=nan"),
        (PretrainConfig, {"lr": 0}, "Expected --lr to be a positive number. Received: --lr=0"),
        (PretrainConfig, {"process_id": -1}, "--process-id to be a non-negative number"),
        (PretrainConfig, {"preset": "huge"}, "Expected --preset in seed, tiny, small, base. Received: --preset='huge'"),
        (PretrainConfig, {"lora_alpha": 8.0}, "--lora-alpha needs --lora-rank"),
        (FinetuneConfig, {"train": ""}, "Expected --train (labelled data file). Received: --train=''"),
        (FinetuneConfig, {"head_dropout": -0.1}, "--head-dropout"),
        (FinetuneConfig, {"pooling": "max"}, "--pooling"),
        (GenerateConfig, {"top_p": 0}, "Expected 0 < --top-p <= 1"),
        (GenerateConfig, {"sampler": "beam"}, "--sampler"),
    ],
)
def test_bad_values_name_the_flag(cls, kwargs, message):
    required = {
        PretrainConfig: {"data": "x"},
        FinetuneConfig: {"train": "t"},
        GenerateConfig: {"run_dir": "r", "prompt": "p"},
    }[cls]
    with pytest.raises(ConfigError) as error:
        cls(**dict(required, **kwargs))
    assert message in str(error.value)


def test_optional_fields_accept_none():
    config = PretrainConfig(data="x", clipnorm=None, tokenizer=None, max_steps=None, dropout=None)
    assert (config.clipnorm, config.tokenizer) == (None, None)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"lr": "3e-4"}, {"lr": 3e-4}),  # PyYAML reads `lr: 3e-4` as a string
        ({"lowercase": "no", "strict": "yes"}, {"lowercase": False, "strict": True}),
        ({"max_steps": "12", "batch_size": 8.0}, {"max_steps": 12, "batch_size": 8}),
        ({"epochs": 2, "clipnorm": 1}, {"epochs": 2, "clipnorm": 1.0}),
    ],
)
def test_config_file_values_are_converted_like_flags(kwargs, expected):
    config = PretrainConfig(data="x.txt", **kwargs)
    for name, value in expected.items():
        assert getattr(config, name) == value and type(getattr(config, name)) is type(value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_steps": "three"}, "Expected --max-steps to be an integer. Received: --max-steps='three'"),
        ({"lr": "fast"}, "Expected --lr to be a number. Received: --lr='fast'"),
        ({"lowercase": "maybe"}, "Expected --lowercase to be true or false. Received: --lowercase='maybe'"),
        ({"batch_size": 2.5}, "Expected --batch-size to be an integer. Received: --batch-size=2.5"),
        ({"seed": True}, "Expected --seed to be an integer. Received: --seed=True"),
        ({"data": ["a", "b"]}, "Expected --data to be a string"),
    ],
)
def test_values_of_the_wrong_type_name_the_flag(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        PretrainConfig(**{"data": "x.txt", **kwargs})


def test_run_dir_may_not_be_the_folder_training_starts_from(tmp_path):
    # Issue 22, items 2 and 3: the run wiped the checkpoint it was about to load.
    source = tmp_path / "model"
    source.mkdir()
    with pytest.raises(ConfigError, match=r"Expected --run-dir to be another folder than --from"):
        FinetuneConfig(train="t", from_run=str(source), run_dir=str(source) + "/")
    with pytest.raises(ConfigError, match=r"Expected --run-dir to be another folder than --init-from"):
        PretrainConfig(data="x", init_from=str(source), run_dir=str(source))
    FinetuneConfig(train="t", from_run=str(source), run_dir=str(tmp_path / "ft"))
