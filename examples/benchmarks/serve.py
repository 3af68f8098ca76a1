#!/usr/bin/env python
"""`klm serve` throughput and latency: dynamic batching on vs one request at a time, in one run.

    python examples/benchmarks/serve.py [--backend torch] [--clients 1,4,8,16] [--rounds 3] [--json OUT]

Two `klm serve` processes serve the same tiny-preset language model (untrained,
so each run writes its own): one batching up to 16 requests per decode, one with
`--max-batch-size 1` (one request at a time, the unbatched baseline). For each
number of concurrent clients, both are measured in alternating rounds (each
client a thread sending `POST /v1/completions` back to back, greedy, fixed
prompts), so both see the same machine load. Reported per mode and client
count: requests/s, generated tokens/s (from the responses' `usage`), and p50 /
p95 request latency; and the batching speed-up in requests/s, the median over
rounds of the ratio within a round. Nothing here is collected by pytest.
"""

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

PROMPTS = [
    "the cat sat on",
    "a big red dog",
    "hello world and then",
    "the quick brown fox ran under the log",
    "small blue mat",
    "then a dog sat",
    "hello",
    "the dog and the cat ran on the mat and then",
]


def make_tiny_run(path):
    """A tiny-preset language-model run (word tokenizer, random weights) at `path`."""
    import keras
    import numpy as np

    from klm import data, runs
    from klm.export.testing import corpus
    from klm.models import KlmCausalLM
    from klm.models.presets import backbone_from_preset

    tokenizer = data.train_tokenizer("word", corpus())
    model = KlmCausalLM(backbone_from_preset("tiny", vocabulary_size=int(tokenizer.vocabulary_size())))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    os.makedirs(path, exist_ok=True)
    data.save_tokenizer(tokenizer, os.path.join(path, runs.TOKENIZER_DIR))
    config = {
        "task": "causal_lm",
        "seq_len": 256,
        "tokenizer": "word",
        "preset": "tiny",
        "vocabulary_size": int(tokenizer.vocabulary_size()),
        "backend": keras.backend.backend(),
    }
    runs.write_json(os.path.join(path, runs.CONFIG_FILE), config)
    runs.save_model(model, os.path.join(path, "best.keras"))
    runs.write_json(os.path.join(path, runs.SUMMARY_FILE), {"task": "causal_lm"})
    return path


class Server:
    def __init__(self, run, backend, max_batch_size):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "klm.cli.main", "serve", run, "--port", "0", "--backend", backend]
            + ["--max-batch-size", str(max_batch_size), "--model-name", "tiny"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = None
        for line in self.process.stdout:
            found = re.search(r" at (http://\S+) ", line)
            if found:
                self.url = found.group(1)
                break
        if self.url is None:
            raise RuntimeError(f"klm serve --max-batch-size {max_batch_size} did not start")
        threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True).start()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def measure(url, clients, requests_per_client, max_tokens):
    """`clients` threads, each sending `requests_per_client` completions in a row: figures of the round."""
    import http.client
    from urllib.parse import urlparse

    address = urlparse(url)
    latencies, tokens = [], []

    def client(number):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=300)  # kept alive
        for i in range(requests_per_client):
            prompt = PROMPTS[(number + i) % len(PROMPTS)]
            body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
            started = time.perf_counter()
            connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            reply = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {reply}")
            latencies.append(time.perf_counter() - started)
            tokens.append(reply["usage"]["completion_tokens"])
        connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    return {"requests_per_s": len(latencies) / wall, "tokens_per_s": sum(tokens) / wall, "latencies": latencies}


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "torch"))
    parser.add_argument("--clients", default="1,4,8,16", help="Comma-separated client counts.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds per client count.")
    parser.add_argument("--requests", type=int, default=4, help="Requests per client per round.")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--json", default=None, help="Write every figure here.")
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend
    client_counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        run = make_tiny_run(os.path.join(folder, "tiny"))
        servers = {"batched": Server(run, args.backend, 16), "one at a time": Server(run, args.backend, 1)}
        try:
            for server in servers.values():  # warm-up
                measure(server.url, 2, 1, args.max_tokens)
            results = {}
            for clients in client_counts:
                rounds = {mode: [] for mode in servers}
                for round_index in range(args.rounds):
                    order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                    for mode in order:
                        rounds[mode].append(measure(servers[mode].url, clients, args.requests, args.max_tokens))
                results[clients] = rounds
                print(f"{clients} clients measured (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        finally:
            codes = {mode: server.stop() for mode, server in servers.items()}
    print(
        f"klm serve, tiny preset, {args.backend}, {args.max_tokens} new tokens per request, greedy; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"1-min load at the end {os.getloadavg()[0]:.1f}; servers exited {codes}"
    )
    header = "| clients | mode | requests/s | tokens/s | p50 latency s | p95 latency s | batched / one at a time |"
    print(header + "\n|---|---|---|---|---|---|---|")
    table = []
    for clients, rounds in results.items():
        ratios = [b["requests_per_s"] / o["requests_per_s"] for b, o in zip(rounds["batched"], rounds["one at a time"])]
        for mode, measured in rounds.items():
            latencies = [lat for m in measured for lat in m["latencies"]]
            row = {
                "clients": clients,
                "mode": mode,
                "requests_per_s": statistics.median(m["requests_per_s"] for m in measured),
                "tokens_per_s": statistics.median(m["tokens_per_s"] for m in measured),
                "p50_s": percentile(latencies, 0.5),
                "p95_s": percentile(latencies, 0.95),
                "speedup": statistics.median(ratios) if mode == "batched" else None,
            }
            table.append(row)
            speedup = f"{row['speedup']:.2f}x" if row["speedup"] else ""
            print(
                f"| {clients} | {mode} | {row['requests_per_s']:.2f} | {row['tokens_per_s']:.1f} | "
                f"{row['p50_s']:.3f} | {row['p95_s']:.3f} | {speedup} |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "max_tokens": args.max_tokens, "rows": table}, f, indent=2)


if __name__ == "__main__":
    main()
