"""Helpers for klm serve's tests and benchmark: tiny run folders to serve.

`make_lm_run` is a tiny untrained language-model run (`klm.export.testing.
make_run`: large weights, so greedy tokens are well separated); `make_sft_run`
the same model written as `klm finetune --task sft` writes an SFT run (its
`config.json` records klm's default template and end-of-text id), so chat
requests are answered through the template.
"""

import json
import os

from klm import runs
from klm.export.testing import make_run
from klm.sft.prompt_template import PromptTemplate


def make_lm_run(path, seed=0):
    """A tiny finished language-model run folder at `path`; returns the path."""

    make_run(path, task="causal_lm", seed=seed)
    return os.fspath(path)


def make_sft_run(path, seed=0):
    """A tiny finished SFT run folder at `path` (klm's default template); returns the path."""

    _, tokenizer = make_run(path, seed=seed)
    config_path = os.path.join(os.fspath(path), runs.CONFIG_FILE)
    with open(config_path) as f:
        config = json.load(f)
    config.update(
        finetune_task="sft",
        sft={
            "template": PromptTemplate().to_dict(),
            "end_token_id": int(tokenizer.end_token_id),
            "start_token_id": None,
            "pad_token_id": int(getattr(tokenizer, "pad_token_id", 0) or 0),
            "train_on_prompt": False,
            "packing": False,
        },
    )
    runs.write_json(config_path, config)
    return os.fspath(path)
