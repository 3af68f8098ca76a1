"""Helpers for the export tests: tiny finished run folders and klm's own greedy generation.

`make_run` writes a tiny finished run folder (model, tokenizer, config,
labels, summary) under the Keras backend of the calling process; the unit
tests beside each module and the CLI and cross-backend tests in
`tests/export_test.py` use it.
"""

import os

import numpy as np

from klm import runs
from klm.generate import generate_text
from klm.testing import tiny_backbone_config

WORDS = "the a cat dog sat ran on under mat log big small red blue and then hello world quick brown fox".split()
LABELS = ["negative", "neutral", "positive"]


def corpus(lines=200, seed=0):
    """Deterministic little sentences over `WORDS` (enough to train any tokenizer kind)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) + " ." for _ in range(lines)]


def make_run(
    path,
    task="causal_lm",
    tokenizer="word",
    multi_label=False,
    seq_len=16,
    position_encoding="learned",
    finished=True,
    seed=0,
):
    """Writes a tiny run folder at `path`, as `klm pretrain`/`finetune` would.

    The weights are drawn with a large scale (0.3) so that the logits of the
    untrained model are well separated: greedy decoding then picks the same
    token on every backend and batch layout.

    Returns:
        The model (under the current Keras backend) and the tokenizer.
    """
    import keras

    from klm import data
    from klm.models import KlmBackbone, KlmCausalLM, KlmClassifier

    subword = {"vocab_size": 36} if tokenizer in ("sentencepiece", "wordpiece") else {}
    tok = data.train_tokenizer(tokenizer, corpus(), **subword)
    backbone = KlmBackbone(
        **tiny_backbone_config(
            vocabulary_size=int(tok.vocabulary_size()),
            max_sequence_length=48,
            position_encoding=position_encoding,
        )
    )
    if task == "causal_lm":
        model = KlmCausalLM(backbone)
    else:
        model = KlmClassifier(backbone, num_classes=len(LABELS), multi_label=multi_label, dropout=0.0)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    data.save_tokenizer(tok, os.path.join(path, runs.TOKENIZER_DIR))
    config = {
        "task": task,
        "seq_len": seq_len,
        "tokenizer": tokenizer,
        "preset": "tiny",
        "vocabulary_size": int(tok.vocabulary_size()),
        "backend": keras.backend.backend(),
    }
    if task == "classifier":
        config.update(labels=LABELS, multi_label=multi_label)
        runs.write_json(os.path.join(path, runs.LABELS_FILE), {"labels": LABELS, "multi_label": multi_label})
    runs.write_json(os.path.join(path, runs.CONFIG_FILE), config)
    runs.save_model(model, os.path.join(path, "best.keras"))
    if finished:
        runs.write_json(os.path.join(path, runs.SUMMARY_FILE), {"task": task, "backend": keras.backend.backend()})
    return model, tok


def klm_greedy(run, prompts, max_new_tokens):
    """klm's own greedy generation (`klm generate --sampler greedy`), one prompt at a time."""

    return [generate_text(run, [p], max_new_tokens=max_new_tokens, sampler="greedy")[0] for p in prompts]
