"""`klm estimate --from / --init-from CKPT`: parameter counts, memory and step time of a pretrained checkpoint.

The checkpoints are tiny random Transformers models written by Transformers
itself (`klm.pretrained.testing`), so nothing is downloaded. The counts are
checked against the model `load_checkpoint` loads (weights read) and against
what `klm finetune --lora-rank` itself reports in `summary.json`.
"""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("transformers")

from klm.config import FinetuneConfig, PretrainConfig  # noqa: E402
from klm.estimate import format_report  # noqa: E402
from klm.pretrained import apply_lora, load_checkpoint, testing  # noqa: E402
from klm.pretrained.checkpoint_estimate import PRECISION_COLUMNS, estimate_checkpoint  # noqa: E402

QUIET = dict(log=lambda message: None)


def finetune_config(path, **kwargs):
    return FinetuneConfig(from_run=path, train="(not read)", batch_size=4, seq_len=16, **kwargs)


def pretrain_config(path, **kwargs):
    return PretrainConfig(data="(not read)", init_from=path, batch_size=4, seq_len=16, **kwargs)


def loaded_classifier(path, num_classes=2, freeze_backbone=False):
    """The classifier `klm finetune --from path` builds, on the checkpoint loaded with its weights."""
    from klm.models import KlmClassifier

    backbone = load_checkpoint(path).backbone
    backbone.trainable = not freeze_backbone
    return KlmClassifier(backbone, num_classes=num_classes)


def labelled(tmp_path, rows=32):
    rng = np.random.default_rng(0)
    words = testing.CORPUS.split()[:40]
    path = tmp_path / "labels.txt"
    with open(path, "w") as f:
        for i in range(rows):
            f.write(f"{i % 2} {' '.join(rng.choice(words, 5))}\n")
    return str(path)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_counts_equal_the_loaded_models(kind):
    path = testing.cached_hf_checkpoint(kind)
    lm = estimate_checkpoint(pretrain_config(path), **QUIET)
    loaded_lm = load_checkpoint(path).causal_lm
    assert lm["checkpoint"]["weights_loaded"] is False and lm["task"] == "causal_lm" and lm["mode"] == "full"
    assert lm["parameters"]["total"] == lm["parameters"]["trainable"] == loaded_lm.count_params()

    full = estimate_checkpoint(finetune_config(path), num_classes=3, **QUIET)
    classifier = loaded_classifier(path, num_classes=3)
    assert full["parameters"]["total"] == full["parameters"]["trainable"] == classifier.count_params()
    hidden = full["dims"]["hidden_dim"]
    assert full["parameters"]["head"] == 3 * hidden + 3
    assert full["parameters"]["backbone"] == loaded_lm.backbone.count_params()

    frozen = estimate_checkpoint(finetune_config(path, freeze_backbone=True), **QUIET)
    frozen_model = loaded_classifier(path, freeze_backbone=True)
    trainable = sum(int(np.prod(w.shape)) for w in frozen_model.trainable_weights)
    assert frozen["mode"] == "freeze_backbone"
    assert frozen["parameters"]["trainable"] == trainable == 2 * hidden + 2
    assert frozen["parameters"]["total"] == frozen_model.count_params()
    # Frozen: no gradients or optimizer state for the backbone, fewer activations kept.
    for precision in PRECISION_COLUMNS:
        assert (
            frozen["memory_mib"][precision]["optimizer_state_mib"]
            < full["memory_mib"][precision]["optimizer_state_mib"]
        )
        assert frozen["memory_mib"][precision]["activations_mib"] < full["memory_mib"][precision]["activations_mib"]


@pytest.mark.parametrize("kind,targets", [("gpt2", "attention"), ("llama", "all")])
def test_lora_counts_equal_apply_lora_on_the_loaded_model(kind, targets):
    path = testing.cached_hf_checkpoint(kind)
    report = estimate_checkpoint(finetune_config(path, lora_rank=4, lora_targets=targets), **QUIET)
    info = apply_lora(loaded_classifier(path), 4, targets=targets)
    p = report["parameters"]
    assert (p["total"], p["trainable"], p["lora"]) == (info["total"], info["trainable"], info["lora"])
    assert report["lora"]["layers"] == len(info["layers"]) and report["mode"] == "lora"
    assert p["trainable"] == p["lora"] + p["head"]
    lm_report = estimate_checkpoint(pretrain_config(path, lora_rank=4, lora_targets=targets), **QUIET)
    lm_info = apply_lora(load_checkpoint(path).causal_lm, 4, targets=targets)
    assert (lm_report["parameters"]["total"], lm_report["parameters"]["trainable"]) == (
        lm_info["total"],
        lm_info["trainable"],
    )


def test_memory_columns():
    path = testing.cached_hf_checkpoint("llama")
    report = estimate_checkpoint(pretrain_config(path, optimizer="adamw"), **QUIET)
    total, mem = report["parameters"]["total"], report["memory_mib"]
    assert mem["float32"]["weights_mib"] == pytest.approx(4 * total / 2**20)
    assert mem["bfloat16"]["weights_mib"] == pytest.approx(2 * total / 2**20)
    assert mem["float32"]["optimizer_state_mib"] == pytest.approx(8 * total / 2**20)
    assert mem["mixed_bfloat16"]["compute_weight_copies_mib"] == pytest.approx(2 * total / 2**20)
    assert mem["bfloat16"]["activations_mib"] == pytest.approx(mem["mixed_bfloat16"]["activations_mib"])
    assert mem["bfloat16"]["activations_mib"] < mem["float32"]["activations_mib"]
    for column in PRECISION_COLUMNS:
        assert mem[column]["total_mib"] == pytest.approx(sum(v for k, v in mem[column].items() if k != "total_mib"))
    text = format_report(report)
    assert f"{total:,}" in text and "weights not read" in text and "not measured" in text


def test_measured_step(tmp_path):
    path = testing.cached_hf_checkpoint("gpt2")
    report = estimate_checkpoint(
        finetune_config(path, lora_rank=2, max_steps=10), measure_steps=2, warmup_steps=1, **QUIET
    )
    measured = report["measured"]
    assert measured["steps"] == 2 and measured["seconds_per_step"] > 0 and measured["peak_rss_mib"] > 0
    assert report["expected_seconds"]["training"] == pytest.approx(10 * measured["seconds_per_step"])
    assert "ms/step" in format_report(report)


def test_lora_counts_equal_what_finetune_reports(tmp_path):
    """`klm estimate --from CKPT --lora-rank R` says what `klm finetune --from CKPT --lora-rank R` reports."""
    from klm.cli.main import main

    path = testing.cached_hf_checkpoint("llama")
    common = ["--from", path, "--lora-rank", "4", "--batch-size", "4", "--seq-len", "16"]
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "finetune",
            *common,
            "--train",
            labelled(tmp_path),
            "--max-steps",
            "1",
            "--run-dir",
            str(run_dir),
            "--verbose",
            "quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    lora = json.loads((run_dir / "summary.json").read_text())["lora"]
    result = CliRunner().invoke(main, ["estimate", *common, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["backend"] == keras.backend.backend()
    assert report["parameters"]["trainable"] == lora["trainable"]
    assert report["parameters"]["total"] == lora["total"]
    assert report["parameters"]["lora"] == lora["lora"]


def test_cli_text_and_flags():
    from klm.cli.main import main

    path = testing.cached_hf_checkpoint("gpt2")
    result = CliRunner().invoke(
        main,
        [
            "estimate",
            "--init-from",
            path,
            "--lora-rank",
            "2",
            "--lora-targets",
            "qv",
            "--batch-size",
            "2",
            "--seq-len",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "klm pretrain --init-from" in result.output and "LoRA rank 2" in result.output
    assert "trainable" in result.output and "mixed_bfloat16" in result.output
    # A pretrain command line with --init-from stays valid: --data is accepted (and not read).
    result = CliRunner().invoke(main, ["estimate", "--init-from", path, "--data", "missing.txt", "--seq-len", "8"])
    assert result.exit_code == 0, result.output
    for args, message in [
        (["--from", path, "--init-from", path], "exclude each other"),
        (["--freeze-backbone", "--data", "x.txt"], "--freeze-backbone needs --from"),
        (["--num-classes", "3", "--data", "x.txt"], "--num-classes needs --from"),
        (["--from", path, "--data", "x.txt"], "--data does not apply"),
        (["--from", path, "--preset", "tiny"], "--preset does not apply"),
        (["--from", path, "--num-classes", "1"], "--num-classes >= 2"),
    ]:
        result = CliRunner().invoke(main, ["estimate", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)


@pytest.mark.parametrize(
    "name,message",
    [
        ("gpt2_base_enn", "Unknown checkpoint 'gpt2_base_enn'"),
        ("./no/such/folder", "does not exist"),
        ("hf://only-org", "hf://ORG/NAME"),
    ],
)
def test_bad_checkpoint_names_exit_2(name, message):
    from klm.cli.main import main

    for flag in ("--from", "--init-from"):
        result = CliRunner().invoke(main, ["estimate", flag, name])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert "Traceback" not in result.output


def test_config_only_folder_and_non_causal_model(tmp_path):
    """Only config.json is read: a folder without weights or tokenizer is enough; an encoder is refused."""
    import shutil

    from klm.cli.main import main

    path = testing.cached_hf_checkpoint("llama")
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    shutil.copy(f"{path}/config.json", config_only / "config.json")
    report = estimate_checkpoint(pretrain_config(str(config_only)), **QUIET)
    assert report["parameters"]["total"] == load_checkpoint(path).causal_lm.count_params()

    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(
        json.dumps(
            {
                "model_type": "bert",
                "architectures": ["BertModel"],
                "vocab_size": 100,
                "hidden_size": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 32,
                "max_position_embeddings": 32,
                "type_vocab_size": 2,
            }
        )
    )
    result = CliRunner().invoke(main, ["estimate", "--from", str(bert)])
    assert result.exit_code == 2, result.output
    assert "not a causal language model" in result.output


def test_klm_run_folder(tmp_path):
    """A klm run: the model is rebuilt from the config inside best.keras, weights not read."""
    from klm.pretrained import load_run
    from klm.train import pretrain

    text = tmp_path / "text.txt"
    text.write_text(testing.CORPUS * 3, encoding="utf-8")
    run_dir = tmp_path / "lm"
    pretrain(
        PretrainConfig(
            data=str(text), preset="tiny", batch_size=4, seq_len=8, max_steps=2, run_dir=str(run_dir), verbose="quiet"
        )
    )
    loaded = load_run(str(run_dir)).model
    report = estimate_checkpoint(pretrain_config(str(run_dir), lora_rank=2), **QUIET)
    assert report["checkpoint"]["kind"] == "klm_run" and report["checkpoint"]["weights_loaded"] is False
    info = apply_lora(loaded, 2)
    assert (report["parameters"]["total"], report["parameters"]["trainable"]) == (info["total"], info["trainable"])
    classifier = estimate_checkpoint(finetune_config(str(run_dir)), **QUIET)
    assert classifier["parameters"]["backbone"] == load_run(str(run_dir)).model.backbone.count_params()
