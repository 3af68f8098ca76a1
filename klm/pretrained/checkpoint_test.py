import json
import os

import pytest

from klm.pretrained import resolve
from klm.pretrained.checkpoint import CheckpointError, classify, load_checkpoint


def _gpt2_dir():
    pytest.importorskip("transformers")
    from klm.pretrained import testing

    return testing.cached_hf_checkpoint("gpt2")


def _edit_config(path, **changes):
    config_path = os.path.join(path, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config.update(changes)
    with open(config_path, "w") as f:
        json.dump(config, f)


def test_classify(tmp_path):
    assert classify("hf://openai-community/gpt2") == "hf"
    assert classify("kaggle://keras/gpt2/keras/gpt2_base_en") == "kaggle"
    assert classify("gpt2_base_en") == "keras_hub_preset"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"task": "causal_lm"}')
    assert classify(tmp_path / "run") == "klm_run"
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "gpt2"}')
    assert classify(tmp_path / "hf") == "hf_dir"
    (tmp_path / "kh").mkdir()
    (tmp_path / "kh" / "config.json").write_text('{"registered_name": "keras_hub>GPT2Backbone"}')
    assert classify(tmp_path / "kh") == "keras_hub_dir"
    with pytest.raises(CheckpointError, match="hf://ORG/NAME"):
        classify("hf://gpt2")
    with pytest.raises(CheckpointError, match="Received: checkpoint='s3://x/y'"):
        classify("s3://x/y")
    with pytest.raises(CheckpointError, match="does not exist"):
        classify(str(tmp_path / "missing"))


def test_unknown_preset_name_suggests_close_ones():
    with pytest.raises(CheckpointError, match="Unknown checkpoint 'gpt2_base'.*gpt2_base_en"):
        load_checkpoint("gpt2_base")


def test_folder_without_config_json(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_checkpoint(tmp_path)


def test_unsupported_model_type(tmp_path):
    from klm.pretrained import testing

    folder = testing.copy_checkpoint(_gpt2_dir(), tmp_path / "foo")
    _edit_config(folder, model_type="foo_bar_lm")
    with pytest.raises(CheckpointError, match="cannot convert Transformers model_type='foo_bar_lm'"):
        load_checkpoint(folder)
    _edit_config(folder, model_type="bert")
    with pytest.raises(CheckpointError, match="not a causal language model"):
        load_checkpoint(folder)


def test_missing_tokenizer_file_and_weights(tmp_path):
    from klm.pretrained import testing

    folder = testing.copy_checkpoint(_gpt2_dir(), tmp_path / "no_merges", drop=("merges.txt",))
    with pytest.raises(CheckpointError, match=r"lacks the tokenizer file\(s\) merges.txt"):
        load_checkpoint(folder)
    folder = testing.copy_checkpoint(_gpt2_dir(), tmp_path / "no_weights", drop=("model.safetensors",))
    with pytest.raises(CheckpointError, match="has no weights: expected model.safetensors"):
        load_checkpoint(folder)


def test_no_network_is_a_clear_error(monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(resolve, "_reachable", lambda *a, **k: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(CheckpointError, match="huggingface.co is unreachable"):
        load_checkpoint("hf://klm-tests/no-such-model-in-any-cache")
    with pytest.raises(CheckpointError, match="Kaggle .* is unreachable"):
        load_checkpoint("gpt2_base_en")


def test_bad_dtype():
    with pytest.raises(CheckpointError, match="dtype"):
        load_checkpoint("gpt2_base_en", dtype="int8")


def test_hf_folder_loads_with_source_and_tokenizer():
    checkpoint = load_checkpoint(_gpt2_dir())
    assert checkpoint.source["kind"] == "hf_dir" and checkpoint.source["model_type"] == "gpt2"
    assert checkpoint.source["architecture"] == "GPT2CausalLM" and checkpoint.task == "causal_lm"
    assert type(checkpoint.tokenizer).__name__ == "GPT2Tokenizer"
    assert checkpoint.start_token_id == checkpoint.end_token_id == checkpoint.tokenizer.token_to_id("<|endoftext|>")


def test_tokenizer_folder_round_trip(tmp_path):
    import numpy as np

    from klm.pretrained import load_tokenizer, save_tokenizer

    tokenizer = load_checkpoint(_gpt2_dir()).tokenizer
    save_tokenizer(tokenizer, tmp_path / "tokenizer")
    loaded = load_tokenizer(tmp_path / "tokenizer")
    assert type(loaded) is type(tokenizer)
    text = "The history of language models"
    assert np.asarray(loaded.tokenize(text)).tolist() == np.asarray(tokenizer.tokenize(text)).tolist()


def _classifier_run(path):
    from klm import runs
    from klm.data import ByteTokenizer, save_tokenizer
    from klm.models import KlmBackbone, KlmClassifier
    from klm.testing import tiny_backbone_config

    path.mkdir()
    tokenizer = ByteTokenizer()
    model = KlmClassifier(KlmBackbone(**tiny_backbone_config(vocabulary_size=258)), num_classes=2)
    save_tokenizer(tokenizer, str(path / "tokenizer"))
    runs.write_json(path / "config.json", {"task": "classifier", "seq_len": 16})
    runs.write_json(path / "labels.json", {"labels": ["neg", "pos"], "multi_label": False})
    runs.save_model(model, path / "best.keras")
    runs.write_json(path / "summary.json", {"steps": 0})
    return str(path)


def test_classifier_run_asked_to_generate_or_export_hf(tmp_path):
    from click.testing import CliRunner

    from klm.cli.main import main

    run = _classifier_run(tmp_path / "clf")
    checkpoint = load_checkpoint(run)
    assert checkpoint.task == "classifier"
    with pytest.raises(CheckpointError, match="Expected a language-model checkpoint"):
        checkpoint.causal_lm
    result = CliRunner().invoke(main, ["generate", run, "--prompt", "hi", "--max-new-tokens", "2"])
    assert result.exit_code == 2 and "classifier run" in result.output
    result = CliRunner().invoke(main, ["export", run, str(tmp_path / "out"), "--format", "hf"])
    assert result.exit_code == 2 and "classifier" in result.output
    assert not (tmp_path / "out").exists()


def _sharded(tmp_path, shard_name):
    """A copy of the GPT-2 folder whose index maps every weight to `shard_name`; the weights moved to other/."""
    from klm.pretrained import testing
    from klm.pretrained.weight_files import weight_names

    folder = testing.copy_checkpoint(_gpt2_dir(), tmp_path / "ckpt")
    names = weight_names(folder)
    (tmp_path / "other").mkdir()
    os.replace(os.path.join(folder, "model.safetensors"), tmp_path / "other" / "model.safetensors")
    index = {"metadata": {}, "weight_map": {name: shard_name for name in names}}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    return folder


@pytest.mark.parametrize("shard", ["../other/model.safetensors", "ABSOLUTE", "link.safetensors"])
def test_shard_index_paths_that_leave_the_folder_are_refused(tmp_path, shard):
    target = str(tmp_path / "other" / "model.safetensors")
    folder = _sharded(tmp_path, target if shard == "ABSOLUTE" else shard)
    if shard == "link.safetensors":
        os.symlink(target, os.path.join(folder, shard))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert "model.safetensors.index.json" in message and "inside the checkpoint folder" in message
    assert repr(target if shard == "ABSOLUTE" else shard) in message


def test_hugging_face_cache_snapshot_links_are_followed(tmp_path):
    """A snapshot folder of the Hugging Face cache links its files to ../../blobs: that is not an escape."""
    from klm.pretrained import testing

    repo = tmp_path / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    plain = testing.copy_checkpoint(_gpt2_dir(), tmp_path / "plain")
    for name in os.listdir(plain):
        blob = repo / "blobs" / f"blob-{name}"
        os.replace(os.path.join(plain, name), blob)
        os.symlink(os.path.join("..", "..", "blobs", blob.name), snapshot / name)
    resolve.check_shard_index(snapshot)  # no index: nothing to check
    from klm.pretrained.weight_files import weight_names

    names = weight_names(snapshot)
    os.replace(os.path.realpath(snapshot / "model.safetensors"), repo / "blobs" / "blob-shard")
    os.remove(snapshot / "model.safetensors")
    os.symlink(os.path.join("..", "..", "blobs", "blob-shard"), snapshot / "model-00001-of-00001.safetensors")
    with open(snapshot / "model.safetensors.index.json", "w") as f:
        json.dump({"weight_map": {name: "model-00001-of-00001.safetensors" for name in names}}, f)
    assert load_checkpoint(snapshot).source["model_type"] == "gpt2"
