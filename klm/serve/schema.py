"""Request bodies of the OpenAI-compatible endpoints (pydantic), and OpenAI-style error bodies.

Fields klm does not use (`user`, `presence_penalty`, `logit_bias`, ...) are
accepted and ignored, as OpenAI-compatible servers do, so that existing
clients and SDKs work unchanged; fields klm uses are validated, and a bad one
is answered with a 400 naming it (see `klm.serve.app`).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# A generous upper bound for any request field that counts tokens; the model's
# context (checked per request) is what really limits a response.
MAX_TOKENS_BOUND = 1_000_000
MAX_CHOICES = 8
MAX_STOPS = 4


class TextPart(BaseModel):
    """One part of a message's content given as a list (`{"type": "text", "text": ...}`)."""

    type: Literal["text"]
    text: str


class Message(BaseModel):
    """A chat message. `developer` is OpenAI's newer name for `system`."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    @property
    def text(self):
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class SamplingFields(BaseModel):
    """What both endpoints share: the model, sampling, length and stop controls."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_BOUND)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    @property
    def stop_strings(self):
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return [s for s in stops if s]


class ChatCompletionRequest(SamplingFields):
    """`POST /v1/chat/completions`. `max_completion_tokens` is OpenAI's newer name for `max_tokens`."""

    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_BOUND)

    @property
    def token_budget(self):
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(SamplingFields):
    """`POST /v1/completions`: raw text continued as is (no template)."""

    prompt: str | list[str]

    @property
    def prompts(self):
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def token_budget(self):
        return self.max_tokens


class ApiError(Exception):
    """An error answered with an OpenAI-style body `{"error": {"message", "type", "param", "code"}}`.

    Args:
        status: the HTTP status (400, 401, 404, ...).
        message: what was wrong, with the value received.
        param: the request field at fault, or `None`.
        code: a short machine-readable code (`"model_not_found"`), or `None`.
        type: OpenAI's error type.
    """

    def __init__(self, status, message, param=None, code=None, type="invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self):
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message, type="invalid_request_error", param=None, code=None):
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def validation_error(errors):
    """The `ApiError` for pydantic's (FastAPI's) list of validation errors: the first one, with its field."""
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    kind = first.get("type", "")
    if kind == "json_invalid":
        detail = first.get("ctx", {}).get("error", "invalid JSON")
        return ApiError(400, f"Expected a JSON body. Received: malformed JSON ({detail})", code="invalid_json")
    param = ".".join(location) or None
    received = first.get("input")
    if param is None:  # the body as a whole: empty, not JSON (no JSON Content-Type), or not an object
        what = "an empty body" if kind == "missing" else f"{_short(received)}"
        return ApiError(
            400,
            f"Expected a JSON object body (Content-Type: application/json). Received: {what}",
            code="invalid_json",
        )
    if kind == "missing":
        message = f"Expected the field {param!r}. Received: no {param!r}"
    else:
        message = f"{first.get('msg', 'Invalid value')} for {param!r}. Received: {param}={_short(received)}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return ApiError(400, message, param=param, code="invalid_value" if kind != "missing" else "missing_field")


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
