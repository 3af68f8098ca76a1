#!/usr/bin/env python
"""klm's benchmark suite: klm on every Keras backend, side by side with plain PyTorch.

One command measures everything in one run and prints a table (and writes
JSON with every raw figure)::

    python examples/benchmarks/run.py [--quick] [--json OUT]

What it measures (each figure a median of repeated timings after warm-up):

* training ms/step and tokens/s through the real klm training step
  (`KlmCausalLM` compiled as `klm.train.pretrain` compiles it, `model.fit` on
  a `klm.data.lm_dataset` tf.data pipeline), for each backend, against the
  plain-PyTorch loops of `reference_torch.py` at the same shape:
  - `seed` preset (vocab 12,000, batch 20 x 35, SGD lr 5 + global clipnorm
    0.5) vs `ReferenceTransformer`; float32 and bfloat16 (klm `mixed_bfloat16`,
    torch autocast bf16);
  - `small` preset (seq 256, AdamW) vs `GPTReference` with the preset's sizes;
* achieved FLOP/s and MFU = flops_per_token x tokens/s / peak, with
  `flops_per_token` from reference_torch.py (6N + attention, matmuls only)
  and the peak a square matmul of the row's dtype on the same device,
  measured during the same run (between measurement rounds);
* generation tokens/s, 128 new tokens: `KlmCausalLM.generate` (greedy, KV
  cache) vs a loop that re-runs the whole sequence for every token;
* `klm.data.lm_dataset` tokens/s alone vs what training consumes;
* peak memory (max RSS, and device memory on a GPU) of each training run.

How it measures: every model runs in its own subprocess (the Keras backend
is fixed at import; the PyTorch reference gets one too). The subprocesses of
one comparison are started together, warmed up, and then measured in
interleaved rounds (a few steps each, in a rotating order), so all of them
see the same machine load; ratios are taken within each round and the
median over rounds is reported. A ratio > 1 means klm is faster.

On a CUDA machine the same command uses the GPU (each framework picks it up
by itself; the peak is measured on it) and also runs bfloat16 for `small`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MARK = "@@klm-bench@@ "
BACKENDS = ("jax", "tensorflow", "torch")
VOCAB = 12000

# ==========================================================================
# Workers (run in subprocesses).
# ==========================================================================


def _peak_rss_mb():
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)


def _median(values):
    return statistics.median(values) if values else float("nan")


def tensorflow_available():
    """Whether TensorFlow can be imported here (a GPU machine may have only PyTorch and JAX)."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


class KlmTrainWorker:
    """The real klm training step: `model.fit` on a `lm_dataset` pipeline, or on numpy arrays.

    `spec["feed"]`: `"tf.data"` (klm's own pipeline, as `klm pretrain` feeds it) or `"numpy"` (token arrays
    through `keras.Model.fit`'s own array adapter; no TensorFlow needed); by default tf.data where TensorFlow
    is installed, numpy otherwise.
    """

    def __init__(self, spec):
        from klm import backend as backend_lib

        self.backend = backend_lib.use_backend(None)
        if spec.get("reuse_freed_memory", True):
            backend_lib.reuse_freed_memory()  # as `klm pretrain` does (klm.training.session.setup)
        import keras
        import numpy as np

        self.rss_after_import_mb = _peak_rss_mb()
        from klm.config import PretrainConfig
        from klm.training.builders import build_causal_lm

        self.keras, self.spec = keras, spec
        self.feed = spec.get("feed") or ("tf.data" if tensorflow_available() else "numpy")
        backend_lib.set_seed(spec.get("seed", 0))
        keras.config.set_dtype_policy(spec["precision"])
        batch, seq = spec["batch_size"], spec["seq_len"]
        config = PretrainConfig(
            data="benchmark",
            preset=spec["preset"],
            batch_size=batch,
            seq_len=seq,
            optimizer=spec["optimizer"],
            lr=spec["lr"],
            clipnorm=spec["clipnorm"],
            schedule=spec["schedule"],
            precision=spec["precision"],
            jit=spec.get("jit", "auto"),
            steps_per_execution=spec.get("steps_per_execution", 1),
            dropout=spec.get("dropout"),
            # Only when set: the worker may run an older klm (`klm_root`) whose config has no such fields.
            **{k: spec[k] for k in ("attention_dropout", "remat") if spec.get(k) is not None},
        )
        self.spe = config.steps_per_execution
        # Exactly the model and compile() of `klm pretrain`.
        steps_per_epoch = 1000
        self.model = build_causal_lm(config, spec["vocab_size"], steps_per_epoch, 10 * steps_per_epoch)
        loss = self.model.loss
        if spec.get("loss", "klm") == "keras":  # ablation: Keras's own sparse cross-entropy
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            self.model.compile(
                optimizer=self.model.optimizer,
                loss=loss,
                weighted_metrics=[],
                jit_compile=self.model.jit_compile,
                steps_per_execution=self.spe,
                sampler="greedy",
            )
        rng = np.random.default_rng(spec.get("seed", 0))
        if self.feed == "numpy":
            # Rows of seq + 1 tokens: inputs and next-token targets, fed as `klm pretrain`'s batches are.
            self.rows = rng.integers(0, spec["vocab_size"], size=(batch * 64, seq + 1), dtype=np.int32)
            self.next_row = 0
        else:
            from klm.data import lm_dataset
            from klm.data.lm.model_inputs import lm_model_inputs

            tokens = rng.integers(0, spec["vocab_size"], size=batch * (seq * 200 + 1), dtype=np.int32)
            ds = lm_dataset(tokens, seq, batch, mode="contiguous", drop_remainder=True)  # one static shape to time
            self.dataset = lm_model_inputs(ds).repeat()
        self.tokens_per_step = batch * seq
        self._fit(spec.get("warmup", 3))
        self.info = {
            "backend": self.backend,
            "params": int(self.model.count_params()),
            "jit_compile": str(self.model.jit_compile),
            "steps_per_execution": self.spe,
            "device": backend_lib.accelerator_name(),
            "rss_after_import_mb": self.rss_after_import_mb,
            "dtype_policy": self.model.dtype_policy.name,
            "loss": type(loss).__name__,
            "feed": self.feed,
            "attention_dropout": self.model.backbone.attention_dropout,
            "remat": getattr(config, "remat", False),
        }
        if hasattr(backend_lib, "attention_path"):
            self.info["attention_path"] = backend_lib.attention_path(
                self.model.backbone.attention_dropout, True, masked=False
            )

    def _fit(self, steps):
        keras = self.keras
        stamps, cpu, losses = [], [], []

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if not stamps:
                    stamps.append(time.perf_counter())
                    cpu.append(time.process_time())

            def on_train_batch_end(self, batch, logs=None):
                losses.append(float(logs["loss"]))  # syncs, like loss.item()
                stamps.append(time.perf_counter())
                cpu.append(time.process_time())

        steps = max(self.spe, steps - steps % self.spe)
        if self.feed == "numpy":
            batch = self.spec["batch_size"]
            need = steps * batch
            if self.next_row + need > len(self.rows):
                self.next_row = 0
            rows = self.rows[self.next_row : self.next_row + need]
            self.next_row += need
            inputs = {"token_ids": rows[:, :-1], "padding_mask": (rows[:, :-1] >= 0).astype("int32")}
            # keras.Model.fit: keras-hub's Task.fit would wrap arrays in tf.data (or grain).
            keras.Model.fit(
                self.model, inputs, rows[:, 1:], batch_size=batch, epochs=1, steps_per_epoch=steps, verbose=0,
                callbacks=[Timer()], shuffle=False,
            )  # fmt: skip
        else:
            self.model.fit(self.dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Timer()], shuffle=False)
        diffs = [(b - a) / self.spe for a, b in zip(stamps, stamps[1:])]
        cpu_diffs = [(b - a) / self.spe for a, b in zip(cpu, cpu[1:])]
        return diffs, losses, cpu_diffs

    def measure(self, steps):
        # One extra execution first: its time includes fit()'s start-up.
        diffs, losses, cpu = self._fit(steps + self.spe)
        return {"times": diffs[1:], "cpu_times": cpu[1:], "losses": losses}

    def finish(self):
        from klm import backend as backend_lib

        if not hasattr(backend_lib, "peak_memory"):  # an older klm (`klm_root`)
            return {"peak_rss_mb": _peak_rss_mb(), "device_peak_mb": _device_peak_mb(self.backend)}
        return {"peak_rss_mb": _peak_rss_mb(), "device_peak_mb": backend_lib.peak_memory()["peak_device_memory_mb"]}


def _device_peak_mb(backend):
    """Peak accelerator memory of this process in MiB, or None on CPU."""
    try:
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "cpu":
                return None
            return device.memory_stats()["peak_bytes_in_use"] / 2**20
        if backend == "tensorflow":
            import tensorflow as tf

            if not tf.config.list_physical_devices("GPU"):
                return None
            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # noqa: BLE001 - memory stats are best effort
        return None
    return None


def _reference_module():
    sys.path.insert(0, str(HERE))
    import reference_torch

    return reference_torch


def _torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class RefTrainWorker:
    """The plain-PyTorch reference training step of reference_torch.py.

    The step is `benchmark_reference_step`'s / `benchmark_gpt`'s (zero_grad,
    forward + loss under autocast for bf16, backward, clip_grad_norm_,
    optimizer step, loss.item()), run step by step so that it can be
    interleaved with klm, and on the GPU when there is one.
    """

    def __init__(self, spec):
        import torch
        from torch import nn

        ref = _reference_module()
        self.rss_after_import_mb = _peak_rss_mb()
        self.torch, self.ref, self.spec = torch, ref, spec
        self.device = _torch_device()
        torch.manual_seed(spec.get("seed", 0))
        V, batch, seq = spec["vocab_size"], spec["batch_size"], spec["seq_len"]
        if spec["model"] == "seed":
            self.model = ref.ReferenceTransformer(V, dropout=spec["dropout"]).to(self.device)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=spec["lr"])
            criterion = nn.CrossEntropyLoss()

            def loss_fn(x, y):
                output = self.model(x)
                return criterion(output.float().view(-1, V), y)

            def batch_fn(gen):
                x = torch.randint(0, V, (seq, batch), generator=gen)
                y = torch.randint(0, V, (seq * batch,), generator=gen)
                return x.to(self.device), y.to(self.device)
        else:
            cfg = dict(spec["gpt"], vocab_size=V, dropout=spec["dropout"], max_sequence_length=seq)
            cfg["attention_dropout"] = spec.get("attention_dropout")
            self.model = ref.GPTReference(**cfg).to(self.device)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=spec["lr"], weight_decay=0.01)

            def loss_fn(x, y):
                return self.model(x, y)[1]

            def batch_fn(gen):
                x = torch.randint(0, V, (batch, seq), generator=gen)
                y = torch.randint(0, V, (batch, seq), generator=gen)
                return x.to(self.device), y.to(self.device)

        self.model.train()
        self.loss_fn, self.batch_fn = loss_fn, batch_fn
        self.gen = torch.Generator().manual_seed(spec.get("seed", 0))
        self.tokens_per_step = batch * seq
        self.measure(spec.get("warmup", 3))
        self.info = {
            "backend": "pytorch-reference",
            "params": sum(p.numel() for p in self.model.parameters()),
            "device": str(self.device),
            "num_threads": torch.get_num_threads(),
            "rss_after_import_mb": self.rss_after_import_mb,
        }

    def _autocast(self):
        import contextlib

        if self.spec["precision"] == "float32":
            return contextlib.nullcontext()
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def measure(self, steps):
        torch = self.torch
        times, cpu, losses = [], [], []
        for _ in range(steps):
            x, y = self.batch_fn(self.gen)
            self._sync()
            c0 = time.process_time()
            t0 = time.perf_counter()
            self.optimizer.zero_grad()
            with self._autocast():
                loss = self.loss_fn(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.spec["clipnorm"])
            self.optimizer.step()
            losses.append(loss.item())
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return {"times": times, "cpu_times": cpu, "losses": losses}

    def peak(self, dtype):
        cuda = self.device.type == "cuda"
        n = 8192 if cuda else (1024 if dtype == "float32" else 512)
        gflops = self.ref.measure_matmul_peak(dtype, str(self.device), n=n, repeats=3, warmup=1)
        return {"gflops": gflops, "n": n}

    def finish(self):
        dev = self.torch.cuda.max_memory_allocated() / 2**20 if self.device.type == "cuda" else None
        return {"peak_rss_mb": _peak_rss_mb(), "device_peak_mb": dev}


class DataWorker:
    """`klm.data.lm_dataset` alone: batches per second, nothing consuming them."""

    def __init__(self, spec):
        from klm import backend as backend_lib

        backend_lib.use_backend("tensorflow")
        import numpy as np

        from klm.data import lm_dataset

        batch, seq = spec["batch_size"], spec["seq_len"]
        tokens = np.random.default_rng(0).integers(0, spec["vocab_size"], size=batch * (seq * 2000 + 1), dtype=np.int32)
        self.dataset = lm_dataset(tokens, seq, batch, mode="contiguous", drop_remainder=True).repeat()
        self.iterator = iter(self.dataset)
        self.tokens_per_step = batch * seq
        self.measure(20)
        self.info = {"backend": "tf.data", "device": "cpu"}

    def measure(self, steps):
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            next(self.iterator)
            times.append(time.perf_counter() - t0)
        return {"times": times, "losses": []}

    def finish(self):
        return {"peak_rss_mb": _peak_rss_mb(), "device_peak_mb": None}


class GenerateWorker:
    """Generation of `new_tokens` tokens: KV cache (`generate`) vs recompute."""

    def __init__(self, spec):
        from klm import backend as backend_lib

        self.backend = backend_lib.use_backend(None)
        import keras
        import numpy as np

        from klm.models import KlmBackbone, KlmCausalLM, preset_config

        self.np, self.spec = np, spec
        backend_lib.set_seed(0)
        keras.config.set_dtype_policy(spec["precision"])
        self.model = KlmCausalLM(KlmBackbone(**preset_config(spec["preset"], spec["vocab_size"])))
        self.model.compile(sampler="greedy")
        prompt, new = spec["prompt_len"], spec["new_tokens"]
        self.total = prompt + new
        ids = np.random.default_rng(0).integers(1, spec["vocab_size"], size=(1, prompt)).astype("int32")
        self.prompt = ids
        self.info = {
            "backend": self.backend,
            "device": backend_lib.accelerator_name(),
            "params": int(self.model.count_params()),
        }
        self.kv_ids = self.cached()[1]
        self.recompute_ids = self.recompute()[1]
        self.info["outputs_match"] = bool((self.kv_ids == self.recompute_ids).all())

    def _padded(self):
        np = self.np
        ids = np.zeros((1, self.total), "int32")
        mask = np.zeros((1, self.total), "int32")
        n = self.prompt.shape[1]
        ids[:, :n], mask[:, :n] = self.prompt, 1
        return ids, mask

    def cached(self):
        ids, mask = self._padded()
        t0 = time.perf_counter()
        out = self.model.generate({"token_ids": ids, "padding_mask": mask}, stop_token_ids=None)
        dt = time.perf_counter() - t0
        return dt, self.np.asarray(out["token_ids"])[0, self.prompt.shape[1] :]

    def recompute(self):
        """Greedy decoding that runs the whole (fixed-length, right-padded)
        sequence through the compiled forward pass for every new token."""
        np = self.np
        ids, mask = self._padded()
        n = self.prompt.shape[1]
        t0 = time.perf_counter()
        for index in range(n, self.total):
            logits = self.model.predict_on_batch({"token_ids": ids, "padding_mask": mask})
            ids[0, index] = int(np.argmax(np.asarray(logits)[0, index - 1]))
            mask[0, index] = 1
        dt = time.perf_counter() - t0
        return dt, ids[0, n:]

    def measure(self, steps):
        cached = [self.cached()[0] for _ in range(steps)]
        recompute = [self.recompute()[0] for _ in range(steps)]
        return {"times": cached, "recompute_times": recompute, "losses": []}

    def finish(self):
        return {"peak_rss_mb": _peak_rss_mb(), "device_peak_mb": _device_peak_mb(self.backend)}


WORKERS = {"klm_train": KlmTrainWorker, "ref_train": RefTrainWorker, "data": DataWorker, "generate": GenerateWorker}


def worker_main(spec_json):
    spec = json.loads(spec_json)
    if spec.get("klm_root"):  # another checkout of klm (e.g. a "before" build in the same interleaved rounds)
        sys.path.insert(0, spec["klm_root"])
    out = sys.stdout
    sys.stdout = sys.stderr  # library chatter must not reach the protocol stream

    def reply(obj):
        out.write(MARK + json.dumps(obj) + "\n")
        out.flush()

    try:
        worker = WORKERS[spec["kind"]](spec)
        reply({"ready": True, "info": worker.info})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "measure":
                reply(worker.measure(cmd["steps"]))
            elif cmd["cmd"] == "peak":
                reply(worker.peak(cmd["dtype"]))
            elif cmd["cmd"] == "finish":
                reply(worker.finish())
                return 0
    except Exception as e:  # noqa: BLE001 - reported to the parent
        import traceback

        traceback.print_exc()
        reply({"error": f"{type(e).__name__}: {e}"})
        return 1
    return 0


# ==========================================================================
# Orchestration.
# ==========================================================================


class Worker:
    """A benchmark subprocess and its line protocol."""

    def __init__(self, name, spec, backend="tensorflow"):
        self.name, self.spec = name, spec
        env = dict(
            os.environ,
            KERAS_BACKEND=backend,
            TF_CPP_MIN_LOG_LEVEL="2",
            XLA_PYTHON_CLIENT_PREALLOCATE="false",
            TF_FORCE_GPU_ALLOW_GROWTH="true",
            PYTHONPATH=os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]),
        )
        # PyTorch's OpenMP threads spin while they wait; on a CPU shared with
        # other work that makes 2 threads several times slower than 1 (see
        # README). Passive waiting is the default here unless set outside.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"klm-bench-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.info, self.error = None, None

    def _read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.log.flush()
                self.log.seek(0)
                tail = self.log.read()[-3000:]
                raise RuntimeError(f"worker {self.name} exited ({self.proc.poll()}):\n{tail}")
            if line.startswith(MARK):
                msg = json.loads(line[len(MARK) :])
                if "error" in msg:
                    self.log.flush()
                    self.log.seek(0)
                    raise RuntimeError(f"worker {self.name}: {msg['error']}\n{self.log.read()[-3000:]}")
                return msg

    def ready(self):
        self.info = self._read()["info"]
        return self.info

    def call(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            return self.call(cmd="finish")
        finally:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            os.unlink(self.log.name)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def detect_device():
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda", torch.cuda.get_device_name(0)
    except ImportError:
        pass
    sys.path.insert(0, str(REPO))
    from klm import backend as backend_lib

    description = backend_lib.describe_device()
    units = ", ".join(description.get("cpu_flags") or []) or "none"
    return "cpu", f"{description.get('name') or platform.machine()}, {os.cpu_count()} CPUs, bf16 units: {units}"


def run_group(title, workers, rounds, steps, ref_name=None, peak_dtype=None, log=print):
    """Starts `workers` (name -> Worker), then measures them in interleaved rounds.

    Returns name -> {"info", "times", "losses", "round_medians", "final", ...}
    plus "_peaks" (matmul GFLOP/s measured between rounds by `ref_name`).
    """
    log(f"\n== {title}: starting {', '.join(workers)}")
    t0 = time.perf_counter()
    results = {}
    try:
        for name, w in workers.items():
            results[name] = {
                "info": w.ready(),
                "times": [],
                "cpu_times": [],
                "losses": [],
                "round_medians": [],
                "cpu_round_medians": [],
                "recompute_times": [],
                "recompute_round_medians": [],
            }
        log(f"   ready after {time.perf_counter() - t0:.0f}s; {rounds} rounds x {steps} steps")
        names = list(workers)
        peaks = []
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                m = workers[name].call(cmd="measure", steps=steps)
                res = results[name]
                res["times"] += m["times"]
                res["losses"] += m["losses"]
                res["round_medians"].append(_median(m["times"]))
                if m.get("cpu_times"):
                    res["cpu_times"] += m["cpu_times"]
                    res["cpu_round_medians"].append(_median(m["cpu_times"]))
                if "recompute_times" in m:
                    res["recompute_times"] += m["recompute_times"]
                    res["recompute_round_medians"].append(_median(m["recompute_times"]))
                time.sleep(0.2)  # let the last process's thread pools go idle
            if ref_name and peak_dtype:
                # A CPU without bf16 matrix units may run bf16 matmuls in
                # float32 (XLA does): the bf16 peak is then the float32 one.
                peaks.append(
                    max(
                        workers[ref_name].call(cmd="peak", dtype=d)["gflops"]
                        for d in dict.fromkeys([peak_dtype, "float32"])
                    )
                )
            medians = "  ".join(f"{n} {1000 * results[n]['round_medians'][-1]:.0f}ms" for n in names)
            log(f"   round {r + 1}: {medians}")
        for name, w in workers.items():
            results[name]["final"] = w.close()
        results["_peaks"] = peaks
        results["_load"] = os.getloadavg()
    finally:
        for w in workers.values():
            w.kill()
    log(f"   done in {time.perf_counter() - t0:.0f}s")
    return results


def _ratio(ref_rounds, rounds):
    """Median over rounds of ref_time / time (> 1: faster than the reference)."""
    pairs = [a / b for a, b in zip(ref_rounds, rounds) if b > 0]
    return _median(pairs)


def flops_per_token(preset, vocab, seq_len):
    """reference_torch.flops_per_token at the klm preset's sizes."""
    dims = _preset_dims(preset)
    return _reference_module().flops_per_token(
        vocab, dims["hidden_dim"], dims["num_layers"], dims["intermediate_dim"], seq_len
    )


def _preset_dims(preset):
    # klm.models.presets is plain Python: read it without importing Keras.
    import importlib.util

    spec = importlib.util.spec_from_file_location("klm_presets", REPO / "klm" / "models" / "presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PRESETS[preset]


TRAIN_SHAPES = {
    # preset -> optimizer settings shared by klm and the reference.
    "seed": dict(optimizer="sgd", lr=5.0, clipnorm=0.5, schedule="step", seq_len=35),
    "small": dict(optimizer="adamw", lr=3e-4, clipnorm=1.0, schedule="constant", seq_len=256),
    "base": dict(optimizer="adamw", lr=3e-4, clipnorm=1.0, schedule="constant", seq_len=1024),
}


def train_group(
    preset,
    precision,
    batch_size,
    backends,
    rounds,
    steps,
    warmup,
    device,
    variants=None,
    log=print,
    seq_len=None,
    attention_dropout=None,
):
    """klm on each backend (and variants) vs the PyTorch reference at one shape.

    `seq_len` overrides the preset's benchmark sequence length; `attention_dropout` the preset's attention
    dropout, on both sides (the reference's SDPA `dropout_p`)."""
    shape = dict(TRAIN_SHAPES[preset], **({"seq_len": seq_len} if seq_len else {}))
    dims = _preset_dims(preset)
    if attention_dropout is None:
        attention_dropout = dims.get("attention_dropout", dims["dropout"])
    common = dict(
        vocab_size=VOCAB,
        batch_size=batch_size,
        seq_len=shape["seq_len"],
        lr=shape["lr"],
        clipnorm=shape["clipnorm"],
        warmup=warmup,
        dropout=dims["dropout"],
        attention_dropout=attention_dropout,
    )
    ref_spec = dict(
        common,
        kind="ref_train",
        model="seed" if preset == "seed" else "gpt",
        precision="float32" if precision == "float32" else "bfloat16",
        gpt={k: dims[k] for k in ("hidden_dim", "num_layers", "num_heads", "intermediate_dim")},
    )
    klm_spec = dict(
        common,
        kind="klm_train",
        preset=preset,
        optimizer=shape["optimizer"],
        schedule=shape["schedule"],
        precision=precision,
    )
    workers = {"pytorch": Worker("pytorch", ref_spec)}
    if precision != "float32":
        # The float32 loop too, in the same rounds: bf16 speed-ups are
        # quoted against it (the issue's yardstick), not only against autocast.
        workers["pytorch fp32"] = Worker("pytorch-fp32", dict(ref_spec, precision="float32"))
    variants = variants or {b: {} for b in backends}
    try:
        for name, extra in variants.items():
            backend = extra.get("backend", name)
            spec = dict(klm_spec, **{k: v for k, v in extra.items() if k != "backend"})
            workers[name] = Worker(name, spec, backend=backend)
    except Exception:
        for w in workers.values():
            w.kill()
        raise
    peak_dtype = "float32" if precision == "float32" else "bfloat16"
    title = f"train {preset} {precision} batch {batch_size}x{shape['seq_len']} on {device}"
    results = run_group(title, workers, rounds, steps, ref_name="pytorch", peak_dtype=peak_dtype, log=log)
    fpt = flops_per_token(preset, VOCAB, shape["seq_len"])
    peak = _median(results.pop("_peaks"))
    load = results.pop("_load")
    tokens = batch_size * shape["seq_len"]
    ref_rounds = results["pytorch"]["round_medians"]
    rows = []
    for name, res in results.items():
        ms = 1000 * _median(res["times"])
        tps = tokens / (ms / 1000)
        rows.append(
            {
                "section": "train",
                "preset": preset,
                "precision": precision,
                "name": name,
                "batch": f"{batch_size}x{shape['seq_len']}",
                "ms_per_step": ms,
                "tokens_per_s": tps,
                "ratio_vs_pytorch": _ratio(ref_rounds, res["round_medians"]),
                "ratio_vs_pytorch_fp32": _ratio(
                    results.get("pytorch fp32", results["pytorch"])["round_medians"]
                    if precision != "float32"
                    else ref_rounds,
                    res["round_medians"],
                ),
                "cpu_ratio_vs_pytorch_fp32": _ratio(
                    results.get("pytorch fp32", results["pytorch"])["cpu_round_medians"], res["cpu_round_medians"]
                ),
                "cpu_ms_per_step": 1000 * _median(res["cpu_times"]),
                "cpu_ratio_vs_pytorch": _ratio(results["pytorch"]["cpu_round_medians"], res["cpu_round_medians"]),
                "load_average": load,
                "gflops_per_s": fpt * tps / 1e9,
                "mfu": fpt * tps / (peak * 1e9) if peak else None,
                "peak_gflops": peak,
                "flops_per_token": fpt,
                "peak_rss_mb": res["final"]["peak_rss_mb"],
                "device_peak_mb": res["final"]["device_peak_mb"],
                "params": res["info"].get("params"),
                "info": res["info"],
                "spec": variants.get(name, {}),
                "round_ms": [1000 * t for t in res["round_medians"]],
                "losses": res["losses"],
            }
        )
    return rows


def generate_group(preset, backends, rounds, prompt_len, new_tokens, log=print):
    spec = dict(
        kind="generate",
        preset=preset,
        vocab_size=VOCAB,
        precision="float32",
        prompt_len=prompt_len,
        new_tokens=new_tokens,
    )
    workers = {b: Worker(f"gen-{b}", spec, backend=b) for b in backends}
    results = run_group(f"generate {preset} prompt {prompt_len} + {new_tokens} new tokens", workers, rounds, 1, log=log)
    results.pop("_peaks")
    results.pop("_load")
    rows = []
    for name, res in results.items():
        kv, full = _median(res["times"]), _median(res["recompute_times"])
        rows.append(
            {
                "section": "generate",
                "preset": preset,
                "name": name,
                "new_tokens": new_tokens,
                "prompt_len": prompt_len,
                "kv_tokens_per_s": new_tokens / kv,
                "recompute_tokens_per_s": new_tokens / full,
                "kv_speedup": _median([b / a for a, b in zip(res["round_medians"], res["recompute_round_medians"])]),
                "outputs_match": res["info"].get("outputs_match"),
                "peak_rss_mb": res["final"]["peak_rss_mb"],
            }
        )
    return rows


def data_rows(train_rows, rounds, log=print):
    """lm_dataset alone, at each training shape, vs the fastest training consumer."""
    shapes = sorted({(r["preset"], r["batch"]) for r in train_rows})
    workers = {}
    for preset, batch in shapes:
        b, s = (int(v) for v in batch.split("x"))
        workers[f"{preset}-{batch}"] = Worker(
            f"data-{preset}", dict(kind="data", vocab_size=VOCAB, batch_size=b, seq_len=s)
        )
    results = run_group("data pipeline (klm.data.lm_dataset alone)", workers, rounds, 50, log=log)
    results.pop("_peaks")
    results.pop("_load")
    rows = []
    for (preset, batch), name in zip(shapes, workers):
        b, s = (int(v) for v in batch.split("x"))
        tps = b * s / _median(results[name]["times"])
        consumers = [
            r
            for r in train_rows
            if r["preset"] == preset and r["batch"] == batch and not r["name"].startswith("pytorch")
        ] or [r for r in train_rows if r["preset"] == preset]
        fastest = max(consumers, key=lambda r: r["tokens_per_s"])
        rows.append(
            {
                "section": "data",
                "preset": preset,
                "batch": batch,
                "pipeline_tokens_per_s": tps,
                "fastest_training": f"{fastest['name']} {fastest['precision']}",
                "training_tokens_per_s": fastest["tokens_per_s"],
                "headroom": tps / fastest["tokens_per_s"],
            }
        )
    return rows


# ==========================================================================
# Corpus scale: `klm prepare` and the first pretraining steps.
# ==========================================================================


def _local_text():
    """Local text to repeat into big corpora: WikiText-2 from ../shared/data if present, else synthetic."""
    import glob

    shared = Path(os.environ.get("KLM_SHARED_DATA", REPO.parent / "shared" / "data")) / "wikitext-2"
    files = sorted(glob.glob(str(shared / "*.txt")))
    if files:
        return b"".join(
            Path(f).read_bytes() for f in files
        ), f"WikiText-2 ({', '.join(Path(f).name for f in files)}) repeated"
    import random

    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(20000)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 120))) + " ." for _ in range(20000)]
    return ("\n".join(lines) + "\n").encode(), "synthetic text (20,000 random words) repeated"


def _build_corpus(path, megabytes, text):
    with open(path, "wb") as f:
        written = 0
        while written < megabytes * 2**20:
            f.write(text)
            written += len(text)
    return written


def _timed_child(cmd, env=None):
    """Runs `cmd`; returns (wall s, peak RSS MiB of the child, stderr text, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
    )
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, stderr, proc.returncode


def _timed_tree(cmd, env=None):
    """Runs `cmd` like `_timed_child`; returns (wall s, CPU s, peak RSS MiB of the largest process, peak PSS MiB
    summed over the process and its children (klm prepare's workers), stderr text, exit code).

    `ru_maxrss` is one process's peak, whatever its worker processes hold; the sum of their PSS (shared pages
    counted once) is sampled from /proc every 0.2 s (0 where /proc has no smaps_rollup)."""
    import threading

    def tree(root):
        pids, todo = [], [root]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
        return pids

    def pss_mib(pid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                return sum(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
        except OSError:
            return 0.0

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
    )
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.wait(0.2):
            peak[0] = max(peak[0], sum(pss_mib(pid) for pid in tree(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (
        time.perf_counter() - t0,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        peak[0],
        stderr,
        proc.returncode,
    )


def _klm_cli(*args):
    return [sys.executable, "-c", "import sys; from klm.cli.main import main; sys.argv[0] = 'klm'; main()", *args]


def prepare_rows(sizes_mb, workdir, tokenizer="sentencepiece", vocab_size=16000, workers=None, log=print):
    """`klm prepare` on corpora of `sizes_mb` MB (local text repeated): wall and CPU time, peak RSS (largest
    process) and peak PSS (summed over its worker processes), stage figures. `workers`: `--workers` (default: klm's,
    one per usable CPU)."""
    import re

    text, origin = _local_text()
    rows = []
    for mb in sizes_mb:
        corpus = os.path.join(workdir, f"corpus-{mb}mb.txt")
        size = _build_corpus(corpus, mb, text)
        out = os.path.join(workdir, f"prepared-{mb}mb")
        log(
            f"\n== prepare {mb} MB ({origin}), --tokenizer {tokenizer} --vocab-size {vocab_size}"
            + (f" --workers {workers}" if workers else "")
        )
        wall, cpu, rss, tree_pss, err, code = _timed_tree(
            _klm_cli(
                "prepare",
                corpus,
                "--out",
                out,
                "--overwrite",
                "--tokenizer",
                tokenizer,
                "--vocab-size",
                str(vocab_size),
                *(["--workers", str(workers)] if workers else []),
            )
        )
        if code != 0:
            raise RuntimeError(f"klm prepare failed ({code}):\n{err[-3000:]}")
        trained = re.search(r"trained \S+ tokenizer: [\d,]+ tokens in ([\d.]+)s", err)
        encoded = re.findall(
            r"tokenizing train: ([\d,]+) tokens in ([\d.]+)s .*?, ([\d,.]+) MB \(([\d,.]+) MB/s\)", err
        )
        cleaned = re.search(r"cleaning train: .* in ([\d.]+)s", err)
        sample = re.search(r"sample: ([\d,]+) of ([\d,]+) documents", err)
        row = {
            "section": "prepare",
            "megabytes": size / 2**20,
            "origin": origin,
            "wall_s": wall,
            "cpu_s": cpu,
            "peak_rss_mb": rss,
            "peak_tree_pss_mb": tree_pss,
            "workers": workers,
            "clean_s": float(cleaned.group(1)) if cleaned else None,
            "tokenizer_train_s": float(trained.group(1)) if trained else None,
            "tokenizer_sample": sample.group(0) if sample else "whole corpus",
            "encode_s": float(encoded[-1][1]) if encoded else None,
            "encode_mb_per_s": float(encoded[-1][3].replace(",", "")) if encoded else None,
            "train_tokens": int(encoded[-1][0].replace(",", "")) if encoded else None,
            "out": out,
        }
        log(
            f"   {wall:.0f}s ({cpu:.0f}s CPU), peak RSS {rss:,.0f} MiB (all processes: PSS {tree_pss:,.0f} MiB), "
            f"tokenizer {row['tokenizer_train_s']}s, "
            f"encoding {row['encode_mb_per_s']} MB/s"
        )
        os.unlink(corpus)
        rows.append(row)
    return rows


def _scaled_prepared(source, out, tokens):
    """A copy of prepared folder `source` whose train split is its tokens tiled to `tokens` tokens."""
    import hashlib
    import shutil

    import numpy as np

    manifest = json.loads(Path(source, "manifest.json").read_text())
    dtype = np.dtype(manifest["token_dtype"]).newbyteorder("<")
    base = np.concatenate(
        [np.fromfile(os.path.join(source, s["file"]), dtype=dtype) for s in manifest["splits"]["train"]["shards"]]
    )
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    shutil.copytree(
        os.path.join(source, manifest["tokenizer"]["path"]), os.path.join(out, manifest["tokenizer"]["path"])
    )
    shard_tokens = manifest["shard_tokens"]
    shards, written, index = [], 0, 0
    while written < tokens:
        count = min(shard_tokens, tokens - written)
        reps = -(-count // len(base))
        chunk = np.tile(base, reps)[:count] if reps > 1 else base[:count]
        name = f"train-{index:05d}.bin"
        data = chunk.astype(dtype).tobytes()
        Path(out, name).write_bytes(data)
        shards.append({"file": name, "tokens": count, "sha256": hashlib.sha256(data).hexdigest()})
        written += count
        index += 1
    manifest["splits"] = {
        "train": {"documents": manifest["splits"]["train"]["documents"], "tokens": tokens, "shards": shards}
    }
    Path(out, "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def scale_rows(prepared, token_counts, workdir, backend="tensorflow", steps=30, log=print):
    """`klm pretrain` on the first `steps` steps of prepared corpora of `token_counts` tokens."""
    rows = []
    for tokens in token_counts:
        folder = _scaled_prepared(prepared, os.path.join(workdir, f"scale-{tokens}"), tokens)
        run_dir = os.path.join(workdir, f"run-{tokens}")
        log(f"\n== pretrain {backend} on {tokens:,} prepared tokens, first {steps} steps")
        wall, rss, err, code = _timed_child(
            _klm_cli(
                "pretrain",
                "--data",
                folder,
                "--run-dir",
                run_dir,
                "--restart",
                "--max-steps",
                str(steps),
                "--valid-fraction",
                "0",
                "--backend",
                backend,
            ),
            env={"KERAS_BACKEND": backend},
        )
        if code != 0:
            raise RuntimeError(f"klm pretrain failed ({code}):\n{err[-3000:]}")
        summary = json.loads(Path(run_dir, "summary.json").read_text())
        rows.append(
            {
                "section": "scale",
                "tokens": tokens,
                "backend": backend,
                "steps": steps,
                "wall_s": wall,
                "peak_rss_mb": rss,
                "train_tokens_per_second": summary.get("train_tokens_per_second"),
                "compile_seconds": summary.get("compile_seconds"),
                "disk_mb": tokens * 2 / 2**20,
            }
        )
        log(f"   {summary.get('train_tokens_per_second')} tokens/s, peak RSS {rss:,.0f} MiB, {wall:.0f}s in all")
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return rows


# ==========================================================================
# Report.
# ==========================================================================


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _print_train(report, out):
    m = report["machine"]
    out(
        f"{'preset':6} {'precision':15} {'run':22} {'batch':7} {'ms/step':>9} {'tokens/s':>9} "
        f"{'ratio':>6} {'cpu':>5} {'vs fp32 loop':>12} {'(cpu)':>6} {'GFLOP/s':>8} {'MFU':>6} "
        f"{'peak RSS MiB':>12} {'dev MiB':>8}"
    )
    for r in report["train"]:
        out(
            f"{r['preset']:6} {r['precision']:15} {r['name']:22} {r['batch']:7} {r['ms_per_step']:9.1f} "
            f"{r['tokens_per_s']:9.0f} {r['ratio_vs_pytorch']:6.2f} {r['cpu_ratio_vs_pytorch']:5.2f} "
            f"{r.get('ratio_vs_pytorch_fp32', float('nan')):12.2f} "
            f"{r.get('cpu_ratio_vs_pytorch_fp32', float('nan')):6.2f} "
            f"{r['gflops_per_s']:8.1f} "
            f"{_fmt(r['mfu'] and 100 * r['mfu'], '5.1f')}% {r['peak_rss_mb']:12.0f} {_fmt(r['device_peak_mb'], '8.0f')}"
        )
    peaks = {(r["preset"], r["precision"]): round(r["peak_gflops"], 1) for r in report["train"] if r["peak_gflops"]}
    out(
        "matmul peak GFLOP/s (median over each comparison's rounds): "
        + ", ".join(f"{p} {q} {g}" for (p, q), g in peaks.items())
    )
    loads = sorted({round(r["load_average"][0], 1) for r in report["train"]})
    out(f"1-min load average at the end of each comparison: {loads} ({m['cpus']} CPUs)")


def print_report(report, out=print):
    m = report["machine"]
    out("\n" + "=" * 100)
    out(
        f"klm benchmarks | {m['device']} | {m['device_name']} | torch threads {m.get('torch_threads')} | "
        f"OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']} | {report['mode']} | {report['wall_seconds']:.0f}s"
    )
    out(
        "ratio = klm tokens/s / PyTorch tokens/s, median of per-round ratios (> 1: klm faster); cpu = the "
        "same on process CPU time; vs fp32 loop = the same against the float32 PyTorch loop in the same rounds; "
        "MFU = flops_per_token x tokens/s / matmul peak (row's dtype, same device, "
        "this run)"
    )
    for backend, choice in m.get("precision_auto", {}).items():
        out(f"--precision auto on {backend}: {choice['precision']} ({choice['reason']})")
    if not report["train"]:
        out("(no training comparisons run)")
    else:
        _print_train(report, out)
    if report.get("generate"):
        out(f"\n{'generation':28} {'KV cache tok/s':>15} {'recompute tok/s':>16} {'speed-up':>9} {'same tokens':>12}")
        for r in report["generate"]:
            out(
                f"{r['preset'] + ' ' + r['name']:28} {r['kv_tokens_per_s']:15.1f} {r['recompute_tokens_per_s']:16.1f} "
                f"{r['kv_speedup']:9.2f} {str(r['outputs_match']):>12}"
            )
    if report.get("prepare"):
        out(f"\n{'klm prepare (' + report['prepare'][0]['origin'] + ')':60}")
        out(
            f"{'corpus MB':>10} {'wall s':>7} {'CPU s':>6} {'peak RSS MiB':>13} {'all PSS MiB':>12} {'clean s':>8} "
            f"{'tokenizer s':>12} {'encode MB/s':>12} {'train tokens':>13}  tokenizer text"
        )
        for r in report["prepare"]:
            out(
                f"{r['megabytes']:10.0f} {r['wall_s']:7.0f} {_fmt(r.get('cpu_s'), '6.0f')} {r['peak_rss_mb']:13,.0f} "
                f"{_fmt(r.get('peak_tree_pss_mb'), '12,.0f')} {_fmt(r['clean_s'], '8.1f')} "
                f"{_fmt(r['tokenizer_train_s'], '12.1f')} {_fmt(r['encode_mb_per_s'], '12.1f')} "
                f"{_fmt(r['train_tokens'], '13,d')}  {r['tokenizer_sample']}"
            )
    if report.get("scale"):
        out(f"\n{'pretraining, first steps':26} {'tokens/s':>9} {'peak RSS MiB':>13} {'compile s':>10} {'wall s':>7}")
        for r in report["scale"]:
            out(
                f"{r['backend'] + ' ' + format(r['tokens'], ',') + ' tokens':26} "
                f"{_fmt(r['train_tokens_per_second'], '9.0f')} {r['peak_rss_mb']:13,.0f} "
                f"{_fmt(r['compile_seconds'], '10.1f')} {r['wall_s']:7.0f}"
            )
    if report.get("data"):
        out(f"\n{'data pipeline':22} {'lm_dataset tok/s':>17} {'fastest training':>28} {'tok/s':>9} {'headroom':>9}")
        for r in report["data"]:
            out(
                f"{r['preset'] + ' ' + r['batch']:22} {r['pipeline_tokens_per_s']:17.0f} {r['fastest_training']:>28} "
                f"{r['training_tokens_per_s']:9.0f} {r['headroom']:8.0f}x"
            )
    out("=" * 100)


# ==========================================================================
# Main.
# ==========================================================================


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few minutes on a small CPU: fewer rounds and steps")
    p.add_argument("--json", default=None, help="write every figure (and raw timings) here")
    p.add_argument(
        "--backends",
        default=None,
        help="comma-separated Keras backends (default: jax,tensorflow,torch; jax,torch where TensorFlow is missing)",
    )
    p.add_argument(
        "--sections",
        default="train,generate,data",
        help="comma-separated: train, generate, data, prepare, scale (prepare and scale are not run by default)",
    )
    p.add_argument("--presets", default="seed,small", help="comma-separated: seed, small, base")
    p.add_argument("--seq-len", type=int, default=None,
                   help="sequence length of every training row (default: seed 35, small 256, base 1024)")  # fmt: skip
    p.add_argument("--attention-dropout", type=float, default=None,
                   help="attention dropout of both sides (default: the preset's)")  # fmt: skip
    p.add_argument(
        "--precisions",
        default=None,
        help="default float32, plus mixed_bfloat16 where the CPU/GPU has bf16 units (small bf16 skipped on CPU "
        "with --quick)",
    )
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="steps per worker per round")
    p.add_argument(
        "--small-batch", type=int, default=None, help="batch of the small preset (default 2 on CPU, 32 on GPU)"
    )
    p.add_argument(
        "--variants",
        default=None,
        help="JSON {name: {backend, jit, steps_per_execution, loss}} of klm runs (replaces one run per backend)",
    )
    p.add_argument(
        "--prepare-mb", default=None, help="corpus sizes in MB for the prepare section (default 10; e.g. 10,100,1000)"
    )
    p.add_argument(
        "--prepare-workers",
        type=int,
        default=None,
        help="klm prepare --workers in the prepare section (default: klm's, one per usable CPU)",
    )
    p.add_argument(
        "--scale-tokens",
        default=None,
        help="prepared train-split sizes for the scale section (default 1000000,30000000,300000000)",
    )
    p.add_argument("--workdir", default=None, help="where the prepare/scale sections write (default: a temp folder)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    wall0 = time.perf_counter()
    device, device_name = detect_device()
    gpu = device == "cuda"
    has_tf = tensorflow_available()
    backends = [b for b in (args.backends or ",".join(BACKENDS if has_tf else ("jax", "torch"))).split(",") if b]
    sections = set(args.sections.split(","))
    presets = args.presets.split(",")
    sys.path.insert(0, str(REPO))
    from klm import backend as backend_lib  # imports no framework

    description = backend_lib.describe_device()
    auto = {b: backend_lib.resolve_precision("auto", b, description) for b in BACKENDS}
    has_bf16 = gpu or bool(description.get("cpu_flags"))
    # bf16 rows where the hardware has bf16 units (it is emulated elsewhere).
    precisions = (args.precisions or ("float32,mixed_bfloat16" if has_bf16 else "float32")).split(",")
    rounds = args.rounds or (3 if args.quick else 8)
    variants = json.loads(args.variants) if args.variants else None
    report = {
        "mode": "quick" if args.quick else "full",
        "train": [],
        "generate": [],
        "data": [],
        "prepare": [],
        "scale": [],
        "machine": {
            "device": device,
            "device_name": device_name,
            "cpus": os.cpu_count(),
            "device_description": description,
            "precision_auto": {b: {"precision": p, "reason": r} for b, (p, r) in auto.items()},
            "platform": platform.platform(),
            "python": platform.python_version(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        },
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
    }
    from importlib import metadata

    for package in ("keras", "keras-hub", "tensorflow", "jax", "torch"):
        try:
            report["machine"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        import torch

        report["machine"]["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass

    if "train" in sections:
        for preset in presets:
            for precision in precisions:
                bf16 = precision != "float32"
                if preset == "small" and bf16 and args.quick and not gpu:
                    print("\n== skipping small mixed_bfloat16 with --quick on CPU (bf16 is emulated there)")
                    continue
                if preset == "seed":
                    batch, steps = 20, args.steps or (3 if args.quick else 5)
                elif preset == "base":
                    batch, steps = 16 if gpu else 1, args.steps or (2 if args.quick else 4)
                else:
                    batch = args.small_batch or (32 if gpu else 2)
                    steps = args.steps or (2 if args.quick else 4)
                if bf16 and not gpu:
                    steps = max(1, steps // 2)
                if gpu:
                    steps *= 10
                slow = not gpu and (bf16 or preset == "small")
                report["train"] += train_group(
                    preset,
                    precision,
                    batch,
                    backends,
                    rounds if not (bf16 and not gpu) else max(3, rounds // 2),
                    steps,
                    warmup=2 if slow else 3,
                    device=device,
                    variants=variants,
                    seq_len=args.seq_len,
                    attention_dropout=args.attention_dropout,
                )
    if "generate" in sections:
        for preset in ["seed"] if args.quick and not gpu else presets:
            report["generate"] += generate_group(
                preset, backends, 2 if args.quick else 5, prompt_len=16, new_tokens=128
            )
    if "data" in sections and report["train"] and not has_tf:
        print("\n== skipping the data section: klm's tf.data pipeline needs TensorFlow, which is not installed")
    elif "data" in sections and report["train"]:
        report["data"] = data_rows(report["train"], 3 if args.quick else 5)
    if "prepare" in sections or "scale" in sections:
        workdir = args.workdir or tempfile.mkdtemp(prefix="klm-bench-scale-")
        os.makedirs(workdir, exist_ok=True)
        sizes = [int(v) for v in (args.prepare_mb or "10").split(",")]
        if "scale" in sections and "prepare" not in sections:
            sizes = sizes[:1]
        prepared = prepare_rows(sizes, workdir, workers=args.prepare_workers)
        if "prepare" in sections:
            report["prepare"] = prepared
        if "scale" in sections:
            counts = [int(v) for v in (args.scale_tokens or "1000000,30000000,300000000").split(",")]
            report["scale"] = scale_rows(
                prepared[0]["out"], counts, workdir, backend=backends[0] if len(backends) == 1 else "tensorflow"
            )
    report["wall_seconds"] = time.perf_counter() - wall0
    print_report(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
