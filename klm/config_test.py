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
