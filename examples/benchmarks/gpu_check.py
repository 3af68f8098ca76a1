#!/usr/bin/env python
"""The GPU comparison in one command: klm (JAX and PyTorch backends) against plain PyTorch, in under 8 minutes.

Each row is its own process, run one after another on the same GPU: plain PyTorch eager (a nanoGPT-style GPT with
`F.scaled_dot_product_attention(dropout_p=...)`, fused AdamW, bf16 autocast, float32 loss; the reference
tutorial's loop for `seed`), the same compiled with `torch.compile`, and klm's own model (`build_causal_lm`,
exactly as `klm pretrain` compiles it) fed numpy arrays through `keras.Model.fit` on the JAX and PyTorch
backends. The loss is read back every step on both sides. No TensorFlow anywhere: the machine needs only
torch, jax, keras and keras-hub.

    python examples/benchmarks/gpu_check.py --out gpu.json            # the whole comparison (~6 min on an H200)
    python examples/benchmarks/gpu_check.py --plan base:jax,base:pytorch --out gpu.json   # some rows
    python examples/benchmarks/gpu_check.py --tiny --out tiny.json    # a CPU smoke test at tiny shapes

Rows (`--plan CONFIG:KIND,...`; KIND = pytorch, pytorch-compiled, jax, torch):

| config | shape | precision | optimizer | dropout (residual/FFN, attention) |
|---|---|---|---|---|
| base | `base` preset (GPT-2 small, vocab 50,304), 16x1024 | mixed_bfloat16 | AdamW, clip 1 | the preset's (0.1, 0) |
| base-attn | the same | mixed_bfloat16 | AdamW, clip 1.0 | 0.1, 0.1 (GPT-2's; the issue's original row) |
| small | `small` preset, vocab 16,000, 32 x 1024 | mixed_bfloat16 | AdamW, clip 1.0 | the preset's |
| seed | the reference's 5.3M model, vocab 12,000, 20 x 35 | float32 | SGD lr 5, clip 0.5 | 0.2 (attention too) |

Both sides of a row use the same dropout rates. Per row it reports tokens/s, the ratio to eager PyTorch of the same
config, first-step (compile) seconds, achieved TFLOP/s and MFU (`reference_torch.flops_per_token` x tokens/s over
`--peak-tflops`, default 790, the dense bf16 figure the issue used for an H200; also over the bf16 matmul peak this
run measures), peak device memory, and the attention path klm took. `--budget` (default 360 s) skips the rows
left when time runs out; each row has `--row-timeout` (default 120 s), so the whole run stays under 8 minutes.

On a bare CUDA machine with torch and jax (CUDA builds) but no keras: on a machine with internet, download the
wheels (python 3.12, manylinux x86_64) `pip download --no-deps -d wheels keras==3.15.1 keras-hub==0.32.0 namex
optree kagglehub==1.0.3 kagglesdk==0.1.28` (and `absl-py rich h5py ml-dtypes packaging regex` if the machine lacks
them); carry them with the repository (`klm/` and `examples/benchmarks/`), then

    pip install --no-index --no-deps --target /tmp/pydeps wheels/*.whl
    PYTHONPATH=/tmp/pydeps:. python examples/benchmarks/gpu_check.py --out gpu.json

The script itself puts the repository root on `sys.path`, so klm needs no installation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MARK = "@@klm-gpu-check@@ "
NOMINAL_PEAK_TFLOPS = 790.0

CONFIGS = {
    "base": dict(preset="base", vocab=50304, batch=16, seq=1024, precision="mixed_bfloat16", optimizer="adamw",
                 lr=3e-4, clipnorm=1.0, steps=30, warmup=5),
    "small": dict(preset="small", vocab=16000, batch=32, seq=1024, precision="mixed_bfloat16", optimizer="adamw",
                  lr=3e-4, clipnorm=1.0, steps=30, warmup=5),
    "seed": dict(preset="seed", vocab=12000, batch=20, seq=35, precision="float32", optimizer="sgd", lr=5.0,
                 clipnorm=0.5, steps=300, warmup=20),
}  # fmt: skip
CONFIGS["base-attn"] = dict(CONFIGS["base"], attention_dropout=0.1)
# Most telling rows first: a run cut short by --budget still answers the main question.
DEFAULT_PLAN = (
    "base:pytorch,base:jax,base:torch,seed:pytorch,seed:jax,seed:torch,base-attn:pytorch,base-attn:jax,"
    "base-attn:torch,small:pytorch,small:jax,small:torch,base:pytorch-compiled,seed:pytorch-compiled"
)
TINY_PLAN = "seed:pytorch,seed:jax,seed:torch,base:pytorch,base:jax,base:torch,base-attn:torch"
KINDS = ("pytorch", "pytorch-compiled", "jax", "torch")


def _presets():
    # klm.models.presets is plain Python: read it without importing Keras.
    import importlib.util

    spec = importlib.util.spec_from_file_location("klm_presets", REPO / "klm" / "models" / "presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PRESETS


def resolve_config(name, tiny=False):
    """The row's settings: the config plus the preset's sizes and dropout rates (or the config's)."""
    if name not in CONFIGS:
        raise SystemExit(f"Expected a config in {', '.join(CONFIGS)}. Received: config={name!r}")
    cfg = dict(CONFIGS[name])
    dims = _presets()[cfg["preset"]]
    cfg.setdefault("dropout", dims["dropout"])
    cfg.setdefault("attention_dropout", dims.get("attention_dropout", cfg["dropout"]))
    if tiny:  # plumbing only: tiny shapes, float32 (a CPU has no fast bf16 here), a few steps
        cfg.update(vocab=256, batch=2, seq=16, steps=3, warmup=1, precision="float32")
        if cfg["preset"] != "seed":
            cfg["preset"] = "tiny"
            dims = _presets()["tiny"]
    cfg["dims"] = {k: dims[k] for k in ("hidden_dim", "num_layers", "num_heads", "intermediate_dim")}
    return cfg


# ==========================================================================
# Workers (each in its own process).
# ==========================================================================


def klm_worker(cfg, backend):
    """klm's model exactly as `klm pretrain` builds and compiles it, numpy-fed through `keras.Model.fit`."""
    os.environ["KERAS_BACKEND"] = backend
    sys.path.insert(0, str(REPO))
    from klm import backend as backend_lib

    backend_lib.use_backend(backend)
    backend_lib.reuse_freed_memory()  # as `klm pretrain` does
    import keras
    import numpy as np

    from klm.config import PretrainConfig
    from klm.training.builders import build_causal_lm

    backend_lib.set_seed(0)
    keras.config.set_dtype_policy(cfg["precision"])
    config = PretrainConfig(
        data="benchmark",
        preset=cfg["preset"],
        batch_size=cfg["batch"],
        seq_len=cfg["seq"],
        optimizer=cfg["optimizer"],
        lr=cfg["lr"],
        clipnorm=cfg["clipnorm"],
        schedule="constant" if cfg["optimizer"] == "adamw" else "step",
        precision=cfg["precision"],
        dropout=cfg["dropout"],
        attention_dropout=cfg["attention_dropout"],
        remat=cfg.get("remat", False),
    )
    model = build_causal_lm(config, cfg["vocab"], 1000, 10000)
    b, t = cfg["batch"], cfg["seq"]
    n = cfg["steps"] + cfg["warmup"]
    x = np.random.default_rng(0).integers(0, cfg["vocab"], size=(n * b, t + 1), dtype=np.int32)
    inputs = {"token_ids": x[:, :-1], "padding_mask": np.ones((n * b, t), dtype=np.int32)}
    stamps = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # read back every step, as the PyTorch loop's loss.item()
            stamps.append(time.perf_counter())

    t0 = time.perf_counter()
    # keras.Model.fit, not keras-hub's Task.fit: with no preprocessor the latter wraps arrays in tf.data or grain,
    # neither of which is on a GPU machine without TensorFlow; Keras's own array adapter feeds them.
    history = keras.Model.fit(
        model,
        inputs,
        x[:, 1:],
        batch_size=b,
        epochs=1,
        steps_per_epoch=n,
        shuffle=False,
        verbose=0,
        callbacks=[Timer()],
    )
    steady = stamps[cfg["warmup"] :]
    return {
        "step_s": (steady[-1] - steady[0]) / (len(steady) - 1),
        "first_step_s": stamps[0] - t0,
        "params": int(model.count_params()),
        "final_loss": float(history.history["loss"][-1]),
        "jit_compile": str(model.jit_compile),
        "device": backend_lib.accelerator_name(),
        "attention_path": backend_lib.attention_path(cfg["attention_dropout"], True, masked=False),
        **backend_lib.peak_memory(),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


def torch_worker(cfg, compiled):
    """Plain PyTorch: the reference loop (seed) or nanoGPT-style GPT (SDPA with dropout_p, fused AdamW, autocast)."""
    import torch

    sys.path.insert(0, str(HERE))
    import reference_torch as ref

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    b, t, v = cfg["batch"], cfg["seq"], cfg["vocab"]
    dims = cfg["dims"]
    if cfg["preset"] == "seed":
        model = ref.ReferenceTransformer(v, dims["hidden_dim"], dims["num_heads"], dims["intermediate_dim"],
                                         dims["num_layers"], cfg["dropout"]).to(dev)  # fmt: skip
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"])
    else:
        model = ref.GPTReference(v, dims["hidden_dim"], dims["num_layers"], dims["num_heads"],
                                 dims["intermediate_dim"], max(t, 16), cfg["dropout"],
                                 attention_dropout=cfg["attention_dropout"]).to(dev)  # fmt: skip
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], fused=dev == "cuda")
    bf16 = cfg["precision"] != "float32"
    step_model = torch.compile(model) if compiled else model
    crit = torch.nn.CrossEntropyLoss()
    n = cfg["steps"] + cfg["warmup"]
    data = torch.randint(0, v, (n, b, t + 1), device=dev)
    stamps, loss = [], None
    model.train()
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(n):
        x, y = data[i, :, :-1], data[i, :, 1:]
        if cfg["preset"] == "seed":
            x, y = x.t().contiguous(), y.t().contiguous()  # the reference is sequence-first
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            out = step_model(x)
            out = out[0] if isinstance(out, tuple) else out
            loss = crit(out.reshape(-1, v).float(), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clipnorm"])
        opt.step()
        loss = loss.item()
        stamps.append(time.perf_counter())
    steady = stamps[cfg["warmup"] :]
    result = {
        "step_s": (steady[-1] - steady[0]) / (len(steady) - 1),
        "first_step_s": stamps[0] - t0,
        "params": sum(p.numel() for p in model.parameters()),
        "final_loss": loss,
        "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "peak_device_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev == "cuda" else None,
        "peak_host_rss_mb": round(ref.peak_rss_mb(), 1),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    if dev == "cuda" and not compiled:  # the bf16 matmul peak of this GPU, for a measured MFU
        result["matmul_peak_tflops"] = ref.measure_matmul_peak("bfloat16", dev, n=8192, repeats=5) / 1e3
    return result


def worker_main(config, kind, tiny):
    cfg = resolve_config(config, tiny)
    try:
        if kind in ("jax", "torch"):
            result = klm_worker(cfg, kind)
        elif kind in ("pytorch", "pytorch-compiled"):
            result = torch_worker(cfg, kind == "pytorch-compiled")
        else:
            raise SystemExit(f"Expected a kind in {', '.join(KINDS)}. Received: kind={kind!r}")
    except Exception as e:  # noqa: BLE001 - reported to the parent as the row's error
        import traceback

        traceback.print_exc()
        result = {"error": f"{type(e).__name__}: {e}"}
    print(MARK + json.dumps(result), flush=True)
    return 0


# ==========================================================================
# The comparison.
# ==========================================================================


def run_row(config, kind, tiny, timeout):
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", config, kind] + (["--tiny"] if tiny else [])
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", TF_CPP_MIN_LOG_LEVEL="2")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        p = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    lines = [line for line in p.stdout.splitlines() if line.startswith(MARK)]
    if not lines:
        return {"error": f"exit {p.returncode}: {(p.stderr or p.stdout)[-1500:]}"}
    result = json.loads(lines[-1][len(MARK) :])
    if "error" in result:
        result["stderr_tail"] = p.stderr[-1500:]
    return result


def add_figures(row, cfg, peak_tflops, matmul_peak_tflops):
    sys.path.insert(0, str(HERE))
    from reference_torch import flops_per_token

    if "step_s" not in row:
        return row
    tokens = cfg["batch"] * cfg["seq"] / row["step_s"]
    d = cfg["dims"]
    fpt = flops_per_token(cfg["vocab"], d["hidden_dim"], d["num_layers"], d["intermediate_dim"], cfg["seq"])
    tflops = fpt * tokens / 1e12
    # Four significant digits, not decimals: a --tiny CPU row does well under 0.001 TFLOP/s.
    row.update(tokens_per_s=round(tokens, 1), tflops=float(f"{tflops:.4g}"))
    bf16 = cfg["precision"] != "float32"
    row["mfu"] = round(tflops / peak_tflops, 4) if bf16 else None
    row["mfu_vs_measured_matmul"] = round(tflops / matmul_peak_tflops, 4) if bf16 and matmul_peak_tflops else None
    return row


def print_table(rows, out=print):
    out(f"{'config':10} {'kind':17} {'tok/s':>10} {'vs eager':>8} {'TFLOP/s':>8} {'MFU':>6} {'peak MiB':>9} "
        f"{'1st step s':>10}  attention")  # fmt: skip
    for row in rows:
        eager = next((r for r in rows if r["config"] == row["config"] and r["kind"] == "pytorch"), {})
        ratio = "-"
        if row.get("tokens_per_s") and eager.get("tokens_per_s"):
            ratio = f"{row['tokens_per_s'] / eager['tokens_per_s']:.2f}"
        mfu = f"{100 * row['mfu']:5.1f}%" if row.get("mfu") else "-"
        memory = row.get("peak_device_memory_mb") or row.get("peak_host_rss_mb")
        if "error" in row:
            out(f"{row['config']:10} {row['kind']:17} ERROR {row['error'][:120]}")
            continue
        out(
            f"{row['config']:10} {row['kind']:17} {row['tokens_per_s']:10,.0f} {ratio:>8} {row['tflops']:8.2f} "
            f"{mfu:>6} {memory or 0:9,.0f} {row['first_step_s']:10.1f}  {row.get('attention_path', 'sdpa (PyTorch)')}"
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="gpu_check.json", help="JSON file for every figure (rewritten after each row)")
    p.add_argument("--plan", default=None, help="comma-separated CONFIG:KIND rows (default: the whole comparison)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes and few steps: a CPU smoke test of the script")
    p.add_argument(
        "--budget",
        type=float,
        default=360.0,
        help="seconds; rows that would start later are skipped (+ --row-timeout: under 8 min)",
    )
    p.add_argument("--row-timeout", type=int, default=120, help="seconds one row may take")
    p.add_argument("--peak-tflops", type=float, default=NOMINAL_PEAK_TFLOPS, help="nominal dense bf16 peak for MFU")
    p.add_argument("--worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(*args.worker, args.tiny)
    plan = [tuple(item.split(":")) for item in (args.plan or (TINY_PLAN if args.tiny else DEFAULT_PLAN)).split(",")]
    for item in plan:
        if len(item) != 2 or item[0] not in CONFIGS or item[1] not in KINDS:
            p.error(f"Expected --plan items CONFIG:KIND with CONFIG in {', '.join(CONFIGS)} and KIND in "
                    f"{', '.join(KINDS)}. Received: {':'.join(item)!r}")  # fmt: skip
    start, rows, matmul_peak = time.time(), [], None
    for config, kind in plan:
        if time.time() - start > args.budget:
            rows.append({"config": config, "kind": kind, "error": "skipped: over --budget"})
            print(f"skipped {config}:{kind}: over --budget {args.budget:.0f}s", flush=True)
            continue
        t0 = time.time()
        row = run_row(config, kind, args.tiny, args.row_timeout)
        matmul_peak = matmul_peak or row.get("matmul_peak_tflops")
        cfg = resolve_config(config, args.tiny)
        row = {"config": config, "kind": kind, "wall_s": round(time.time() - t0, 1), **row}
        row["settings"] = {k: v for k, v in cfg.items() if k != "dims"}
        rows.append(add_figures(row, cfg, args.peak_tflops, matmul_peak))
        print(json.dumps({k: v for k, v in row.items() if k != "stderr_tail"})[:400], flush=True)
        report = {"rows": rows, "wall_s": round(time.time() - start, 1), "tiny": args.tiny, "argv": argv or sys.argv}
        tmp = f"{args.out}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, args.out)
    print_table(rows)
    print(f"wrote {args.out} ({time.time() - start:.0f}s)")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
