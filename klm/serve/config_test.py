import pytest

from klm.errors import ConfigError
from klm.serve.config import ServeConfig


def test_defaults_bind_to_loopback():
    config = ServeConfig(run_dir="runs/lm")
    assert (config.host, config.port, config.api_key, config.max_batch_size) == ("127.0.0.1", 8000, None, 16)


@pytest.mark.parametrize(
    "field, value, flag",
    [("port", 70000, "--port"), ("max_batch_size", 0, "--max-batch-size"), ("api_key", " ", "--api-key")],
)
def test_bad_values_name_the_flag(field, value, flag):
    with pytest.raises(ConfigError, match=flag):
        ServeConfig(run_dir="runs/lm", **{field: value})
