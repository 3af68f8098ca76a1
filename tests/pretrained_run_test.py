"""A run folder started from a pretrained checkpoint (the layout `klm pretrain --init-from` writes).

config.json records the checkpoint under "pretrained", tokenizer/ is the
keras-hub tokenizer (`klm.pretrained.save_tokenizer`), best.keras the
keras-hub CausalLM saved without its preprocessor (LoRA layers included).
`evaluate`, `generate` and `export --format hf` work on it.
"""

import json

import pytest

pytest.importorskip("transformers")

from click.testing import CliRunner  # noqa: E402

from klm import runs  # noqa: E402
from klm.cli.main import main  # noqa: E402
from klm.pretrained import apply_lora, load_checkpoint, save_tokenizer, testing  # noqa: E402


def _pretrained_run(path):
    checkpoint = load_checkpoint(testing.cached_hf_checkpoint("gpt2"))
    model = checkpoint.causal_lm
    apply_lora(model, rank=2)
    model.preprocessor = None  # keras-hub tokenizers do not reload from a .keras file; tokenizer/ holds it
    path.mkdir()
    runs.write_json(path / "config.json", {"task": "causal_lm", "seq_len": 32, "pretrained": checkpoint.source})
    save_tokenizer(checkpoint.tokenizer, path / "tokenizer")
    runs.save_model(model, path / "best.keras")
    runs.write_json(path / "summary.json", {"steps": 0})
    return str(path)


def test_evaluate_generate_export_a_run_from_a_checkpoint(tmp_path):
    run = _pretrained_run(tmp_path / "run")
    text = tmp_path / "text.txt"
    text.write_text(testing.CORPUS[:300], encoding="utf-8")
    source = testing.cached_hf_checkpoint("gpt2")
    ours = CliRunner().invoke(main, ["evaluate", run, "--data", str(text), "--json"])
    theirs = CliRunner().invoke(main, ["evaluate", source, "--data", str(text), "--seq-len", "32", "--json"])
    assert ours.exit_code == 0 and theirs.exit_code == 0, ours.output + theirs.output
    ours, theirs = (json.loads(r.output[r.output.index("{") :]) for r in (ours, theirs))
    assert ours["seq_len"] == 32 and ours["tokens"] == theirs["tokens"]
    assert ours["perplexity"] == pytest.approx(theirs["perplexity"], rel=1e-4)  # LoRA B starts at zero
    result = CliRunner().invoke(
        main, ["generate", run, "--prompt", "The history", "--sampler", "greedy", "--max-new-tokens", "4"]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["export", run, str(tmp_path / "hf"), "--format", "hf", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.index("{") :])["max_abs_diff"] <= 1e-4
