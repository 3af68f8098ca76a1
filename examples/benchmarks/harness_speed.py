"""Requests/s of klm's lm-eval model against lm-eval's own `hf` model, same checkpoint, same CPU.

Writes a random GPT-2 checkpoint with Transformers (no download), then runs the
local tasks of `examples/lm_eval_tasks` (multiple choice, rolling perplexity,
greedy generation; documents repeated to make the run longer) with
`klm.evaluation.harness.KlmLM` on $KERAS_BACKEND and with lm-eval's `HFLM`
(PyTorch, float32), in interleaved rounds; prints requests/s of each and the
ratio per task type, and checks that the metrics agree.

    KERAS_BACKEND=torch python examples/benchmarks/harness_speed.py --rounds 2
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TASKS_DIR = str(Path(__file__).resolve().parents[1] / "lm_eval_tasks")


def timed(model, task, batch_size):
    import lm_eval
    from lm_eval.tasks import TaskManager

    calls = {"requests": 0}
    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        method = getattr(type(model), name)

        def counted(requests, *args, _method=method, **kwargs):
            calls["requests"] += len(requests)
            started = time.perf_counter()
            out = _method(model, requests, *args, **kwargs)
            calls["seconds"] = calls.get("seconds", 0.0) + time.perf_counter() - started
            return out

        setattr(model, name, counted)
    results = lm_eval.simple_evaluate(
        model=model, tasks=[task], task_manager=TaskManager(include_path=TASKS_DIR), random_seed=0
    )
    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        delattr(model, name)
    return calls["requests"], calls["seconds"], results["results"][task]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()
    import keras
    from lm_eval.models.huggingface import HFLM

    from klm.evaluation.harness import KlmLM
    from klm.pretrained.testing import make_hf_checkpoint

    path = make_hf_checkpoint("gpt2", Path(tempfile.mkdtemp()) / "gpt2", hidden=args.hidden, layers=args.layers)
    models = {
        "klm": KlmLM(path, batch_size=args.batch_size),
        "hf": HFLM(pretrained=path, device="cpu", batch_size=args.batch_size, dtype="float32"),
    }
    print(f"GPT-2 {args.layers} layers x {args.hidden}, batch {args.batch_size}, klm on {keras.config.backend()}")
    for task in ("klm_choice", "klm_text", "klm_answer"):
        rates = {"klm": [], "hf": []}
        metrics = {}
        for _ in range(args.rounds):
            for name, model in models.items():
                requests, seconds, metrics[name] = timed(model, task, args.batch_size)
                rates[name].append(requests / seconds)
        best = {name: max(values) for name, values in rates.items()}
        print(
            f"{task}: {requests} requests; klm {best['klm']:.1f} req/s, hf {best['hf']:.1f} req/s, "
            f"klm/hf {best['klm'] / best['hf']:.2f}; metrics equal: "
            f"{all(metrics['klm'][k] == metrics['hf'][k] for k in metrics['hf'] if 'acc' in k or 'exact' in k)}"
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
