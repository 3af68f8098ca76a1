from pathlib import Path

import pytest

from klm.errors import ConfigError
from klm.export.options import ExportOptions


def test_savedmodel_builds_its_export_config_and_other_formats_none():
    options = ExportOptions(source=Path("runs/x"), out_dir="o", version=3, max_new_tokens=4, backend="jax")
    config = options.savedmodel_config
    assert options.source == "runs/x" and config.run_dir == "runs/x" and config.version == 3
    assert config.verify_max_new_tokens == 4 and config.backend == "jax"
    assert ExportOptions(source="r", out_dir="o", format="gguf", gguf_type="q8_0").savedmodel_config is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "tflite"}, "Received: --format='tflite'"),
        ({"version": 0}, "Expected a version >= 1. Received: --version=0"),
        ({"max_new_tokens": 0}, "Received: --max-new-tokens=0"),
        ({"checkpoint": "worst"}, "Received: --checkpoint='worst'"),
        ({"format": "onnx", "version": 2}, "--version and --portable apply to --format savedmodel only"),
        ({"format": "onnx", "portable": True}, "--version and --portable apply to --format savedmodel only"),
        ({"format": "onnx", "gguf_type": "q8_0"}, "--gguf-type applies to --format gguf only"),
        ({"format": "gguf", "gguf_type": "q4"}, "Received: --gguf-type='q4'"),
        ({"format": "onnx", "litert_sequence_length": 8}, "--litert-sequence-length applies to --format litert"),
        ({"format": "litert", "litert_sequence_length": 0}, "Received: --litert-sequence-length=0"),
        ({"out_dir": ""}, "Received: OUT=''"),
        ({"source": None}, "Received: RUN=None"),
    ],
)
def test_bad_options_name_the_flag(kwargs, message):
    with pytest.raises(ConfigError, match="Received") as info:
        ExportOptions(**{"source": "runs/x", "out_dir": "o", **kwargs})
    assert message in str(info.value)
