"""Requests/s of klm's lm-eval model against lm-eval's own `hf` model, same checkpoint, same CPU.

Writes a random GPT-2 checkpoint with Transformers (no download), then runs the
local tasks of `examples/lm_eval_tasks` (multiple choice, rolling perplexity,
greedy generation) with `klm.evaluation.harness.KlmLM` on $KERAS_BACKEND and
with lm-eval's `HFLM` (PyTorch, float32), in interleaved rounds; prints a
line per task, then a JSON object: requests/s of each (best round: the first
klm round on JAX/TensorFlow includes compiling), the ratio klm / hf per task,
whether the metrics agree, the CPU and the load average.

    KERAS_BACKEND=jax python examples/benchmarks/harness_speed.py --rounds 3
"""

import argparse
import json
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
    report = {
        "backend": keras.config.backend(),
        "model": f"GPT-2 {args.layers} layers x {args.hidden} (random, Transformers)",
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "cpu": cpu_name(),
        "load_average_before": os.getloadavg(),
        "tasks": {},
    }
    for task in ("klm_choice", "klm_text", "klm_answer"):
        rates = {"klm": [], "hf": []}
        metrics = {}
        for _ in range(args.rounds):
            for name, model in models.items():
                requests, seconds, metrics[name] = timed(model, task, args.batch_size)
                rates[name].append(requests / seconds)
        best = {name: max(values) for name, values in rates.items()}
        equal = all(metrics["klm"][k] == metrics["hf"][k] for k in metrics["hf"] if "acc" in k or "exact" in k)
        report["tasks"][task] = {
            "requests": requests,
            "klm_requests_per_s": round(best["klm"], 2),
            "hf_requests_per_s": round(best["hf"], 2),
            "klm_over_hf": round(best["klm"] / best["hf"], 3),
            "accuracy_metrics_equal": equal,
        }
        print(
            f"{task}: {requests} requests; klm {best['klm']:.1f} req/s, hf {best['hf']:.1f} req/s, "
            f"klm/hf {best['klm'] / best['hf']:.2f}; metrics equal: "
            f"{equal}"
        )
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


def cpu_name():
    """The CPU's model name and flags of interest, from /proc/cpuinfo (Linux), else the platform's."""
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_tile") if f in flags]
    family = f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
    return f"{fields.get('model name', platform.processor())} ({family}), {os.cpu_count()} cores, {' '.join(extras)}"


if __name__ == "__main__":
    main()
