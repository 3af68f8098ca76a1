"""The served model: loading, prompts as `klm generate` builds them, and per-request limits."""

import os

from klm.errors import ConfigError
from klm.generate import detokenize, position_limit, reply_prompt_ids, reply_special_ids, run_template
from klm.pretrained import load_checkpoint
from klm.serve.schema import ApiError

# Prompt + response tokens per request for models without a position limit
# (rotary, sinusoidal positions), unless --context-length says otherwise.
DEFAULT_CONTEXT = 2048


class ServedModel:
    """A loaded causal LM with its tokenizer, template and limits, as `klm serve` answers with it.

    Prompts are built by `klm.generate.reply_prompt_ids`, the function
    `klm generate` uses: chat requests get the run's template (SFT runs), raw
    completions the prompt as is, so greedy responses equal `klm generate`'s.

    Args:
        checkpoint: a `klm.pretrained.Checkpoint` of a causal LM.
        name: the model id clients send.
        context_length: prompt + response tokens per request at most, or
            `None` for the model's position limit (else `DEFAULT_CONTEXT`).
        default_max_tokens: response tokens when a request gives no
            `max_tokens` (cut to what the context leaves).

    Examples:
    ```python
    served = ServedModel.load("runs/sft", name="sft")
    ids = served.chat_prompt_ids([Message(role="user", content="hi")])
    ```
    """

    def __init__(self, checkpoint, name, context_length=None, default_max_tokens=256):

        if not checkpoint.mode.generates:
            raise ConfigError(
                f"Expected a language model to serve; {checkpoint.path} is a {checkpoint.task} run. "
                f"Received: RUN={checkpoint.path!r}"
            )
        self.checkpoint = checkpoint
        self.name = name
        self.model = checkpoint.model
        self.tokenizer = checkpoint.tokenizer
        self.template = run_template(checkpoint)
        self.start_id, self.end_id = reply_special_ids(checkpoint)
        self.pad_id = getattr(self.tokenizer, "pad_token_id", 0) or 0
        limit = position_limit(self.model)
        if context_length is not None and limit is not None and context_length > limit:
            raise ConfigError(
                f"Expected --context-length <= the model's {limit} positions. Received: --context-length="
                f"{context_length}"
            )
        self.context_length = context_length or limit or DEFAULT_CONTEXT
        self.default_max_tokens = default_max_tokens

    @classmethod
    def load(cls, spec, name=None, dtype=None, **kwargs):
        """Loads `spec` (anything `klm generate` takes) with `klm.pretrained.load_checkpoint`."""

        checkpoint = load_checkpoint(spec, dtype=dtype)
        return cls(checkpoint, name or default_model_name(spec), **kwargs)

    def chat_prompt_ids(self, messages):
        """Token ids of a chat request: the template over the conversation, ending with the prompt part.

        Args:
            messages: `klm.serve.schema.Message`s: an optional system message,
                then user and assistant turns in alternation, ending with a
                user turn (what `klm generate --chat` builds up).

        Raises:
            ApiError: a conversation of another shape, or several messages to
                a model without a template.
        """

        system = None
        turns = list(messages)
        if turns and turns[0].role in ("system", "developer"):
            system, turns = turns[0].text, turns[1:]
        expected = ["user", "assistant"]
        for index, message in enumerate(turns):
            if message.role != expected[index % 2]:
                offset = len(messages) - len(turns)
                raise ApiError(
                    400,
                    f"Expected an optional system message, then user and assistant turns in alternation. "
                    f"Received: messages[{index + offset}].role={message.role!r}",
                    param=f"messages.{index + offset}.role",
                    code="invalid_conversation",
                )
        if not turns or turns[-1].role != "user":
            raise ApiError(
                400,
                "Expected the conversation to end with a user message. Received: "
                + (f"a last role of {turns[-1].role!r}" if turns else "no user message"),
                param="messages",
                code="invalid_conversation",
            )
        if self.template is None and (system is not None or len(turns) > 1):
            raise ApiError(
                400,
                f"Expected one user message: {self.name} has no chat template (only SFT runs have one), so its "
                f"prompt is the message as is. Received: {len(messages)} messages (use /v1/completions for raw text)",
                param="messages",
                code="no_chat_template",
            )
        history = [(turns[i].text, turns[i + 1].text) for i in range(0, len(turns) - 1, 2)]
        return reply_prompt_ids(self.checkpoint, turns[-1].text, history=history, system=system)

    def completion_prompt_ids(self, prompt):
        """Token ids of a raw prompt (`klm generate --raw`, or any non-SFT run's prompt)."""

        return reply_prompt_ids(self.checkpoint, prompt, raw=True)

    def response_budget(self, prompt_ids, max_tokens, prompt_param="messages"):
        """Tokens the response may have: `max_tokens`, or the default cut to what the context leaves.

        Raises:
            ApiError: the prompt fills the context, or `max_tokens` does not fit beside it.
        """
        room = self.context_length - len(prompt_ids)
        if room < 1:
            raise ApiError(
                400,
                f"Expected a prompt shorter than the model's context of {self.context_length} tokens. "
                f"Received: a prompt of {len(prompt_ids)} tokens",
                param=prompt_param,
                code="context_length_exceeded",
            )
        if max_tokens is None:
            return min(self.default_max_tokens, room)
        if max_tokens > room:
            raise ApiError(
                400,
                f"Expected max_tokens <= {room}: the model's context is {self.context_length} tokens and the "
                f"prompt has {len(prompt_ids)}. Received: max_tokens={max_tokens}",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return max_tokens

    def text(self, ids):
        """The text of generated ids."""

        return detokenize(self.tokenizer, list(ids))


def default_model_name(spec):
    """The model id of `spec`: a folder's name, or the preset / `hf://` name as given."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        return os.path.basename(os.path.normpath(os.path.abspath(spec)))
    return spec
