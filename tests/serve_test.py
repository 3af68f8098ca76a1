"""`klm serve` as a user runs it: a live server subprocess on a random port, driven by the official `openai`
client, plain HTTP (streams cut short, malformed bodies), a real browser on the chat page, and SIGTERM.

The served model is a tiny untrained SFT run folder (klm's default template), so chat answers go through
the template exactly as `klm generate` applies it; greedy answers are compared with `klm generate`'s.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import keras
import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
try:  # the HTTP client the openai package ships with (httpx2 in recent releases)
    import httpx2 as httpx
except ImportError:
    httpx = pytest.importorskip("httpx")

from klm.cli.main import main  # noqa: E402
from klm.serve.testing import make_sft_run  # noqa: E402

BACKEND = keras.backend.backend()
KEY = "test-key"
PROMPT = "the cat sat"
MAX_TOKENS = 8
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class LiveServer:
    """`klm serve RUN --port 0 ...` in a subprocess; `url` once it listens."""

    def __init__(self, run, *flags):
        env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "klm.cli.main", "serve", run, "--port", "0", *flags],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        self.ready = threading.Event()
        self.url = None
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(180) or self.url is None:
            self.stop()
            raise AssertionError("klm serve did not start:\n" + "".join(self.lines))

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            found = re.search(r" at (http://\S+) ", line)
            if found:
                self.url = found.group(1)
                self.ready.set()
        self.ready.set()

    def client(self, key=KEY):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=900)  # hang guard

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_sft_run(tmp_path_factory.mktemp(f"serve_{BACKEND}") / "sft")


@pytest.fixture(scope="module")
def server(run):
    live = LiveServer(run, "--api-key", KEY, "--max-batch-size", "8")
    yield live
    live.stop()
    assert live.process.returncode == 0, "".join(live.lines)


def chat(client, prompt=PROMPT, **kwargs):
    kwargs.setdefault("max_tokens", MAX_TOKENS)
    return client.chat.completions.create(
        model="sft", messages=[{"role": "user", "content": prompt}], temperature=0, **kwargs
    )


def klm_generate(run, *args):
    result = CliRunner().invoke(main, ["generate", run, "--sampler", "greedy", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output[:-1]  # the response, then a newline


@pytest.mark.slow
def test_chat_streamed_equals_plain_equals_klm_generate(server, run):
    client = server.client()
    reply = chat(client)
    answer = reply.choices[0].message.content
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chat(client, stream=True) if chunk.choices)
    expected = klm_generate(run, "--prompt", PROMPT, "--max-new-tokens", str(MAX_TOKENS))
    print(f"[{BACKEND}] greedy: api {answer!r}, streamed {streamed!r}, klm generate {expected!r}")
    assert answer == streamed == expected
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    conversation = [
        {"role": "system", "content": "reply in words"},
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "and then"},
    ]
    second = client.chat.completions.create(model="sft", messages=conversation, temperature=0, max_tokens=MAX_TOKENS)
    assert second.choices[0].message.content is not None

    completion = client.completions.create(model="sft", prompt=PROMPT, temperature=0, max_tokens=MAX_TOKENS)
    raw = klm_generate(run, "--prompt", PROMPT, "--raw", "--max-new-tokens", str(MAX_TOKENS))
    assert raw == PROMPT + " " + completion.choices[0].text  # klm generate echoes the prompt
    assert completion.usage.completion_tokens > 0
    assert [model.id for model in client.models.list()] == ["sft"]


@pytest.mark.slow
def test_bad_requests_are_4xx_and_the_server_keeps_answering(server):
    client = server.client()
    cases = [
        (openai.NotFoundError, dict(model="gpt-4")),
        (openai.BadRequestError, dict(max_tokens=-1)),
        (openai.BadRequestError, dict(max_tokens=10**9)),
        (openai.BadRequestError, dict(messages=[{"role": "wizard", "content": "hi"}])),
        (openai.BadRequestError, dict(messages=[{"role": "user", "content": "the cat " * 60}])),
    ]
    for error, override in cases:
        arguments = {"model": "sft", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4, **override}
        with pytest.raises(error) as raised:
            client.chat.completions.create(**arguments)
        body = raised.value.body
        print(f"{raised.value.status_code} {json.dumps(body)}")
        assert set(body) == {"message", "type", "param", "code"} and "Received" in body["message"]
    with pytest.raises(openai.AuthenticationError):
        chat(server.client(key="wrong"))
    raw = httpx.post(
        server.url + "/v1/chat/completions",
        content=b"{oops",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    print(raw.status_code, raw.text)
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_json"
    assert chat(client).choices[0].message.content is not None


@pytest.mark.slow
def test_concurrent_clients_get_their_own_answers_and_n_is_one_batch(server):
    client = server.client()
    prompts = ["the cat sat", "a dog", "hello world", "big red fox", "then a", "small blue log", "ran under", "on"]
    alone = [chat(client, prompt).choices[0].message.content for prompt in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(lambda prompt: chat(client, prompt).choices[0].message.content, prompts * 2))
    assert together == alone * 2
    several = chat(client, n=8)
    assert [choice.message.content for choice in several.choices] == [alone[0]] * 8
    health = httpx.get(server.url + "/health").json()
    print(f"[{BACKEND}] scheduler after the concurrent phase: {health}")
    assert health["largest_batch"] == 8 and health["active"] == 0


@pytest.mark.slow
def test_a_client_leaving_mid_stream_frees_its_slot(server):
    body = {"model": "sft", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 40, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, headers=headers, timeout=60) as stream:
        assert next(stream.iter_lines()).startswith("data: ")
    deadline = time.time() + 30
    while (health := httpx.get(server.url + "/health").json())["active"] and time.time() < deadline:
        time.sleep(0.1)
    print(f"[{BACKEND}] after the disconnect: {health}")
    assert health["active"] == 0 and health["queued"] == 0
    assert chat(server.client()).choices[0].message.content is not None


@pytest.mark.slow
def test_the_chat_page_streams_the_greedy_answer_in_a_browser(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium)")
    expected = chat(server.client()).choices[0].message.content
    assert expected
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(server.url + "/")
        page.fill("#api-key", KEY)
        page.fill("#temperature", "0")
        page.fill("#max-tokens", str(MAX_TOKENS))
        page.wait_for_function("document.getElementById('model').textContent === 'sft'")
        page.fill("#prompt", PROMPT)
        page.press("#prompt", "Enter")
        page.wait_for_selector(".msg.assistant[data-done='true'], .msg.error[data-done='true']", timeout=600_000)
        shown = page.inner_text(".msg.assistant")
        page.click("#curl")
        curl = page.input_value("#curl-out")
        screenshot = tmp_path / "chat_page.png"
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    print(f"[{BACKEND}] chat page screenshot: {screenshot}; page {shown!r}, api {expected!r}")
    assert shown == expected
    assert curl.startswith("curl -N " + server.url + "/v1/chat/completions") and KEY in curl


@pytest.mark.slow
def test_sigterm_answers_the_requests_in_flight_then_exits_0(server, run):
    """Runs last: stops the module's server with SIGTERM while a long stream and 8 other choices are decoding."""
    from klm.generate import generate_reply
    from klm.pretrained import load_checkpoint

    checkpoint = load_checkpoint(run)
    candidates = ["the cat sat", "a dog", "hello world", "big red fox", "then a", "small blue log", "ran under"]
    answers = {p: generate_reply(checkpoint, p, max_new_tokens=36, sampler="greedy") for p in candidates}
    prompt = max(candidates, key=lambda p: len(answers[p]))  # the longest greedy answer: still decoding at SIGTERM
    client = server.client()
    pieces, others = [], []
    first = threading.Event()

    def stream():
        for chunk in chat(client, prompt, stream=True, max_tokens=36):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                first.set()
        first.set()

    def batch():
        others.extend(c.message.content for c in chat(client, prompt, n=8, max_tokens=36).choices)

    threads = [threading.Thread(target=stream), threading.Thread(target=batch)]
    for thread in threads:
        thread.start()
    assert first.wait(60)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert server.process.wait(60) == 0, "".join(server.lines)
    print(f"[{BACKEND}] after SIGTERM: stream {''.join(pieces)!r}, {len(others)} batched answers, exit 0")
    assert "".join(pieces) == answers[prompt] and others == [answers[prompt]] * 8
    assert "stopped" in server.lines[-1]
    with pytest.raises(openai.APIConnectionError):
        chat(client)
