"""Loads the JSONL files beside this file as lm-eval datasets (`custom_dataset: !function utils.NAME`).

Each task YAML here names one of these functions, so the tasks run offline
from any working directory: `klm evaluate RUN --tasks klm_choice
--include-path examples/lm_eval_tasks`.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def _jsonl(name):
    import datasets

    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return datasets.Dataset.from_list(rows)


def choice_docs(**kwargs):
    return {"test": _jsonl("choice.jsonl")}


def text_docs(**kwargs):
    return {"test": _jsonl("text.jsonl")}


def answer_docs(**kwargs):
    return {"test": _jsonl("answer.jsonl")}
