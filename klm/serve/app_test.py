"""The app in-process (FastAPI's TestClient): endpoints, parity with `klm generate`, every error body."""

import json

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from klm.generate import generate_reply, generate_text  # noqa: E402
from klm.serve.app import create_app  # noqa: E402
from klm.serve.engine import ServedModel  # noqa: E402
from klm.serve.scheduler import BatchScheduler  # noqa: E402
from klm.serve.schema import Message  # noqa: E402
from klm.serve.testing import make_lm_run, make_sft_run  # noqa: E402


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    served = ServedModel.load(make_sft_run(tmp_path_factory.mktemp("app") / "sft"))
    with TestClient(create_app(served, BatchScheduler(served), api_key="sesame")) as client:
        client.headers["Authorization"] = "Bearer sesame"
        yield served, client


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    served = ServedModel.load(make_lm_run(tmp_path_factory.mktemp("app") / "lm"), name="tiny")
    with TestClient(create_app(served, BatchScheduler(served))) as client:
        yield served, client


def sse(text):
    lines = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_chat_plain_and_streamed_equal_klm_generate_with_the_template(sft):
    served, client = sft
    body = {"model": "sft", "messages": [{"role": "user", "content": "the cat"}], "temperature": 0, "max_tokens": 6}
    reply = client.post("/v1/chat/completions", json=body).json()
    expected = generate_reply(served.checkpoint, "the cat", max_new_tokens=6, sampler="greedy")
    assert reply["object"] == "chat.completion" and reply["model"] == "sft"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": expected}
    usage = reply["usage"]
    assert usage["prompt_tokens"] == len(served.chat_prompt_ids([Message(role="user", content="the cat")]))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    chunks = sse(client.post("/v1/chat/completions", json={**body, "stream": True}).text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert streamed == expected
    assert chunks[-2]["choices"][0]["finish_reason"] == reply["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == usage


def test_completions_and_n_choices(lm):
    served, client = lm
    body = {"model": "tiny", "prompt": "the cat", "temperature": 0, "max_tokens": 5}
    reply = client.post("/v1/completions", json=body).json()
    expected = generate_text(served.checkpoint, ["the cat"], max_new_tokens=5, sampler="greedy")[0]
    assert reply["object"] == "text_completion" and reply["choices"][0]["text"] == expected
    several = client.post("/v1/completions", json={**body, "n": 3, "prompt": ["the cat", "a"]}).json()
    assert [c["index"] for c in several["choices"]] == list(range(6))
    assert [c["text"] for c in several["choices"][:3]] == [expected] * 3
    prompt_tokens = len(served.completion_prompt_ids("the cat")) + len(served.completion_prompt_ids("a"))
    assert several["usage"]["prompt_tokens"] == prompt_tokens and several["usage"]["completion_tokens"] > 0


def test_models_health_and_page(lm):
    _, client = lm
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "/v1/chat/completions" in page.text and "Copy as curl" in page.text


CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "the cat"}]}
LONG = [{"role": "user", "content": "the cat " * 40}]


@pytest.mark.parametrize(
    "body, status, param, code",
    [
        ("{not json", 400, None, "invalid_json"),
        ({"model": "tiny"}, 400, "messages", "missing_field"),
        ({**CHAT, "messages": "hi"}, 400, "messages", "invalid_value"),
        ({**CHAT, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role", "invalid_value"),
        ({**CHAT, "max_tokens": -1}, 400, "max_tokens", "invalid_value"),
        ({**CHAT, "max_tokens": 10**12}, 400, "max_tokens", "invalid_value"),
        ({**CHAT, "max_tokens": 1000}, 400, "max_tokens", "context_length_exceeded"),
        ({**CHAT, "messages": LONG}, 400, "messages", "context_length_exceeded"),
        ({**CHAT, "temperature": "hot"}, 400, "temperature", "invalid_value"),
        ({**CHAT, "model": "gpt-4"}, 404, "model", "model_not_found"),
    ],
)
def test_bad_requests_get_openai_error_bodies_and_the_server_keeps_answering(lm, body, status, param, code):
    _, client = lm
    if isinstance(body, str):
        response = client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post("/v1/chat/completions", json=body)
    error = response.json()["error"]
    print(status, json.dumps(response.json()))
    assert response.status_code == status
    assert set(error) == {"message", "type", "param", "code"} and "Received" in error["message"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2}).status_code == 200


def test_unknown_paths_and_methods_are_openai_errors(lm):
    _, client = lm
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    assert client.get("/v1/chat/completions").status_code == 405


def test_the_api_key_is_required_on_v1_only(sft):
    _, client = sft
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        response = client.post("/v1/chat/completions", content="{not json", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/models").status_code == 200
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200
