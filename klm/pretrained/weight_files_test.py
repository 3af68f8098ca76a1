"""Damaged safetensors files and layer counts that disagree with config.json are refused before keras-hub reads them."""

import json
import os

import pytest

from klm.pretrained.checkpoint import load_checkpoint
from klm.pretrained.resolve import CheckpointError
from klm.pretrained.weight_files import safetensors_header, weight_names


def _copy(tmp_path, name="ckpt"):
    pytest.importorskip("transformers")
    from klm.pretrained import testing

    return testing.copy_checkpoint(testing.cached_hf_checkpoint("gpt2"), tmp_path / name)


def _edit_config(folder, **changes):
    path = os.path.join(folder, "config.json")
    config = json.load(open(path))
    config.update(changes)
    json.dump(config, open(path, "w"))


def test_truncated_safetensors_is_named(tmp_path):
    folder = _copy(tmp_path)
    path = os.path.join(folder, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(CheckpointError, match=r"model.safetensors is damaged or truncated .*the file has"):
        load_checkpoint(folder)
    with open(path, "r+b") as f:
        f.truncate(4)  # not even the header's length
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        safetensors_header(path)


def test_more_layers_in_config_than_in_the_weights(tmp_path):
    folder = _copy(tmp_path)
    _edit_config(folder, n_layer=4)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert "config.json says n_layer=4" in message and "model.safetensors" in message
    assert "layer(s) 2, 3" in message and "h.2.*" in message


def test_fewer_layers_in_config_than_in_the_weights(tmp_path):
    folder = _copy(tmp_path)
    _edit_config(folder, n_layer=1)
    per_layer = sum(1 for name in weight_names(folder) if ".h.1." in f".{name}")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert "config.json says n_layer=1" in message and "also hold layer(s) 1" in message
    assert f"{per_layer} weights would be left unused" in message and "truncated" in message


def test_matching_checkpoint_loads(tmp_path):
    folder = _copy(tmp_path)
    names = weight_names(folder)
    assert names and set(names.values()) == {"model.safetensors"}
    assert load_checkpoint(folder).source["model_type"] == "gpt2"
