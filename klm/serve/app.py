"""The FastAPI app: OpenAI-compatible endpoints over a `BatchScheduler`, the chat page, errors as JSON.

Endpoints: `GET /v1/models`, `POST /v1/chat/completions`, `POST
/v1/completions` (both with `stream` as server-sent events in OpenAI's chunk
format, ending with `data: [DONE]`), `GET /health`, and the chat page at `/`.
Every error is answered with OpenAI's body `{"error": {"message", "type",
"param", "code"}}`: 400 for a malformed or invalid request, 401 for a
missing or wrong API key, 404 for an unknown model or path, 500 (the server
keeps running) if generation itself fails.

The HTTP side runs on asyncio and never touches the model: a request becomes
`Sequence`s queued on the scheduler thread, whose events come back through an
`asyncio.Queue` (`loop.call_soon_threadsafe`). A client that disconnects sets
its sequences' `cancelled` event, and the scheduler drops them from the batch.
"""

import asyncio
import hmac
import json
import threading
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from klm.serve.scheduler import Sequence
from klm.serve.schema import ApiError, ChatCompletionRequest, CompletionRequest, error_body, validation_error

# How often a waiting non-streaming request checks whether its client left.
DISCONNECT_POLL_SECONDS = 0.5


def create_app(served, scheduler, api_key=None):
    """The app serving `served` (a `ServedModel`) through `scheduler` (a `BatchScheduler`).

    The scheduler thread is started when the app starts and stopped, after
    the requests in flight are answered, when it shuts down.

    Args:
        served: the `klm.serve.engine.ServedModel`.
        scheduler: its `klm.serve.scheduler.BatchScheduler` (not started).
        api_key: when set, `/v1/*` requires `Authorization: Bearer KEY`.

    Examples:
    ```python
    app = create_app(served, BatchScheduler(served))
    uvicorn.run(app, port=8000)
    ```
    """

    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, scheduler.stop)

    app = FastAPI(title="klm serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_BearerAuth, api_key=api_key)
    created = int(time.time())

    @app.exception_handler(ApiError)
    async def api_error(request, exc):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):
        error = validation_error(exc.errors())
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = f"{exc.detail}. Received: {request.method} {request.url.path}"
        return JSONResponse(error_body(message, code=code), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def server_error(request, exc):
        message = f"The server failed on this request: {type(exc).__name__}: {exc}"
        return JSONResponse(error_body(message, type="server_error"), status_code=500)

    def model_card():
        return {"id": served.name, "object": "model", "created": created, "owned_by": "klm"}

    def check_model(name):
        if name != served.name:
            raise ApiError(
                404,
                f"Expected the model {served.name!r} (see GET /v1/models). Received: model={name!r}",
                param="model",
                code="model_not_found",
            )

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return resources.files("klm.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health():
        stats = scheduler.stats
        return {
            "status": "ok",
            "model": served.name,
            "active": scheduler.active,
            "queued": scheduler.queued,
            "batches": stats["batches"],
            "sequences": stats["sequences"],
            "largest_batch": stats["largest_batch"],
            "cancelled": stats["cancelled"],
        }

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str):
        check_model(name)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        check_model(body.model)
        prompt_ids = served.chat_prompt_ids(body.messages)
        budget = served.response_budget(prompt_ids, body.token_budget)
        return await _answer(request, body, [(prompt_ids, budget)], chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        check_model(body.model)
        prompts = [served.completion_prompt_ids(prompt) for prompt in body.prompts]
        if not prompts:
            raise ApiError(400, "Expected a prompt. Received: prompt=[]", param="prompt")
        budgets = [served.response_budget(ids, body.token_budget, prompt_param="prompt") for ids in prompts]
        return await _answer(request, body, list(zip(prompts, budgets)), chat=False)

    async def _answer(request, body, prompts, chat):
        """Queues `n` sequences per `(prompt ids, token budget)` and answers with their results."""
        channel = _Channel(asyncio.get_running_loop())
        sequences = [
            Sequence(
                ids,
                budget,
                channel.emit,
                temperature=body.temperature,
                top_p=body.top_p,
                seed=None if body.seed is None else body.seed + index,
                stop=body.stop_strings,
                index=index,
                cancelled=channel.cancelled,
                streams=body.stream,
            )
            for index, (ids, budget) in enumerate(pair for pair in prompts for _ in range(body.n))
        ]
        try:
            scheduler.submit(sequences)
        except RuntimeError as e:
            raise ApiError(503, f"Not accepting requests: {e}. Received: a request during shutdown") from None
        reply = _Reply(served.name, chat, sum(len(ids) for ids, _ in prompts), len(sequences))
        if body.stream:
            return StreamingResponse(_stream(channel, reply), media_type="text/event-stream")
        results = {}
        while len(results) < len(sequences):
            try:
                event = await asyncio.wait_for(channel.queue.get(), DISCONNECT_POLL_SECONDS)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    channel.cancelled.set()
                    return JSONResponse(error_body("client disconnected"), status_code=499)
                continue
            if event["type"] == "error":
                channel.cancelled.set()
                raise ApiError(500, event["message"], type="server_error")
            if event["type"] == "finish":
                results[event["index"]] = event
        return reply.complete([results[index] for index in range(len(sequences))])

    async def _stream(channel, reply):
        finished = 0
        try:
            for index in range(reply.count):
                yield _sse(reply.chunk(index, role=True))
            while finished < reply.count:
                event = await channel.queue.get()
                if event["type"] == "error":
                    yield _sse(error_body(event["message"], type="server_error"))
                    break
                if event["type"] == "text":
                    yield _sse(reply.chunk(event["index"], text=event["text"]))
                elif event["type"] == "finish":
                    finished += 1
                    reply.completion_tokens += event["completion_tokens"]
                    yield _sse(reply.chunk(event["index"], finish_reason=event["finish_reason"]))
            else:
                yield _sse(reply.usage_chunk())
            yield "data: [DONE]\n\n"
        finally:
            # Ended early (the client went away, or an error): free the batch rows.
            channel.cancelled.set()

    return app


def _sse(data):
    return f"data: {json.dumps(data)}\n\n"


class _Channel:
    """Events of one request's sequences, from the scheduler thread to the event loop."""

    def __init__(self, loop):
        self.loop = loop
        self.queue = asyncio.Queue()
        self.cancelled = threading.Event()

    def emit(self, event):
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)


class _Reply:
    """OpenAI's response and chunk bodies of one request."""

    def __init__(self, model, chat, prompt_tokens, count):
        self.model, self.chat, self.count = model, chat, count
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0

    def _head(self, object_name):
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.model}

    def usage(self):
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def complete(self, results):
        self.completion_tokens = sum(result["completion_tokens"] for result in results)
        if self.chat:
            choices = [
                {
                    "index": result["index"],
                    "message": {"role": "assistant", "content": result["text"]},
                    "finish_reason": result["finish_reason"],
                    "logprobs": None,
                }
                for result in results
            ]
            return {**self._head("chat.completion"), "choices": choices, "usage": self.usage()}
        choices = [
            {key: result[key] for key in ("index", "text", "finish_reason")} | {"logprobs": None} for result in results
        ]
        return {**self._head("text_completion"), "choices": choices, "usage": self.usage()}

    def chunk(self, index, text=None, role=False, finish_reason=None):
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return {**self._head("chat.completion.chunk"), "choices": [choice]}
        choice = {"index": index, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
        return {**self._head("text_completion"), "choices": [choice]}

    def usage_chunk(self):
        """The last chunk: no choices, the token counts (OpenAI's `stream_options.include_usage` chunk)."""
        name = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._head(name), "choices": [], "usage": self.usage()}


class _BearerAuth:
    """ASGI middleware: with an API key set, `/v1/*` answers 401 without `Authorization: Bearer KEY`.

    Checked before the body is read, so a request without the key learns
    nothing about what it sent.
    """

    def __init__(self, app, api_key=None):
        self.app = app
        self.expected = None if api_key is None else f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if self.expected is None or scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"authorization")
        if given is not None and hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        received = "no Authorization header" if given is None else "a wrong key"
        body = error_body(
            f"Expected the header 'Authorization: Bearer <API key>' (the server's --api-key). Received: {received}",
            code="invalid_api_key",
        )
        response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
