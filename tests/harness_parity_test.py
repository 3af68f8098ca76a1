"""klm inside lm-evaluation-harness == lm-eval's own `hf` model, on the same Transformers checkpoint.

Tiny random GPT-2 and Llama checkpoints written by Transformers
(`klm.pretrained.testing`) are evaluated on the three local tasks of
`examples/lm_eval_tasks` (multiple choice, rolling perplexity, greedy
generation) twice: with `klm.evaluation.harness.KlmLM` on the backend of
$KERAS_BACKEND, and with lm-eval's `HFLM` (PyTorch, CPU, float32). Per
request log-likelihoods agree to 1e-4, the multiple-choice metrics are
equal, the perplexities agree to 1e-5 relative, the generations are equal.
No network: the tasks read JSONL files beside their YAML.
"""

from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="lm-eval is klm's optional `eval` extra (pip install klm[eval])")
pytest.importorskip("accelerate", reason="lm-eval's hf model (the reference) needs accelerate")
pytest.importorskip("transformers")

from klm.pretrained import testing  # noqa: E402

TASKS_DIR = str(Path(__file__).resolve().parents[1] / "examples" / "lm_eval_tasks")
TASKS = ["klm_choice", "klm_text", "klm_answer"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def evaluate(model):
    import lm_eval
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(
        model=model,
        tasks=TASKS,
        task_manager=TaskManager(include_path=TASKS_DIR),
        log_samples=True,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )


def responses(results, task):
    """`{doc_id: resps}` of one task."""
    return {sample["doc_id"]: sample["resps"] for sample in results["samples"][task]}


def loglikelihoods(resps):
    """Every log-likelihood (and greedy flag) in one document's responses."""
    values = []
    for resp in resps:
        value = resp[0]
        values.append(tuple(value) if isinstance(value, (list, tuple)) else (value, None))
    return values


_MODELS = {}


def klm_model(kind):
    """One `KlmLM` per checkpoint kind and process."""
    from klm.evaluation.harness import KlmLM

    if kind not in _MODELS:
        _MODELS[kind] = KlmLM(testing.cached_hf_checkpoint(kind), batch_size=4)
    return _MODELS[kind]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_tasks_equal_lm_eval_hf_model(kind):
    import keras
    from lm_eval.models.huggingface import HFLM

    path = testing.cached_hf_checkpoint(kind)
    ours = evaluate(klm_model(kind))
    theirs = evaluate(HFLM(pretrained=path, device="cpu", batch_size=4, dtype="float32"))
    lines = []
    for task in ("klm_choice", "klm_text"):
        diffs = []
        a, b = responses(ours, task), responses(theirs, task)
        assert a.keys() == b.keys() and a
        for doc_id in a:
            for (x, x_greedy), (y, y_greedy) in zip(loglikelihoods(a[doc_id]), loglikelihoods(b[doc_id]), strict=True):
                diffs.append(abs(x - y))
                assert x_greedy == y_greedy
        worst = max(diffs)
        for metric, value in ours["results"][task].items():
            if "stderr" in metric or not isinstance(value, float):
                continue
            reference = theirs["results"][task][metric]
            lines.append(f"{task} {metric}: klm {value:.6f} hf {reference:.6f} max per-request diff {worst:.1e}")
            if task == "klm_choice":
                assert value == reference, metric
            else:
                assert value == pytest.approx(reference, rel=1e-5), metric
        assert worst <= 1e-4, task
    a, b = responses(ours, "klm_answer"), responses(theirs, "klm_answer")
    assert a == b
    assert any(resps[0][0] for resps in a.values())  # the model generated some text
    lines.append(
        f"klm_answer exact_match: klm {ours['results']['klm_answer']['exact_match,none']} hf "
        f"{theirs['results']['klm_answer']['exact_match,none']}; generations equal: {len(a)} of {len(b)}"
    )
    print(f"\n{kind} on {keras.config.backend()}:\n" + "\n".join(lines))


def test_tokens_equal_transformers_tokenizer():
    """klm's token ids for lm-eval's strings are the Transformers tokenizer's (what HFLM encodes)."""
    import transformers

    texts = ["Question: What did early models count?\nAnswer:", " n-grams in large corpora", "a  b\n\nc 2024 ?!"]
    for kind in ("gpt2", "llama"):
        path = testing.cached_hf_checkpoint(kind)
        lm = klm_model(kind)
        reference = transformers.AutoTokenizer.from_pretrained(path)
        for text in texts:
            assert lm.tok_encode(text) == reference.encode(text), (kind, text)
        assert lm.prefix_token_id == (
            reference.bos_token_id if reference.bos_token_id is not None else reference.eos_token_id
        )
        assert lm.max_length == (64 if kind == "gpt2" else 128)
