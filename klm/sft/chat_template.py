"""`ChatTemplate`: a pretrained checkpoint's own Jinja chat template, rendered safely.

Hugging Face checkpoints ship their chat format as a Jinja template
(`chat_template` in `tokenizer_config.json`, or `chat_template.jinja`).
klm renders it only with jinja2's `ImmutableSandboxedEnvironment` (no
attribute access to Python internals, no mutation, no imports; anything
else raises and is reported as a `ConfigError`), and only if jinja2 is
installed (it comes with torch); otherwise it refuses and says to pass
`--template FILE`.

To know which tokens get the loss, a conversation is rendered turn by turn:
the text up to the assistant's turn (`add_generation_prompt=True`) is
prompt, the text the assistant's message adds is response. The template's
end-of-turn text (its `eos_token`, e.g. `<|im_end|>`) is cut from the
response, as klm appends the tokenizer's end-of-text token itself.

A template is code from the checkpoint, so every render is bounded (see
`klm.sft.template_sandbox`): loop iterations, `range()` sizes, `*`/`**`
results, output length and wall-clock time. A template past a bound is
refused (`ConfigError` naming its source), and `checkpoint_chat_template`
renders a probe conversation first, so a template that would hang fails
before training starts.
"""

import json
from pathlib import Path

from klm.errors import ConfigError
from klm.sft.template_sandbox import TemplateLimitError, limited_sandbox

_SENTINEL = "\x00klm-prompt\x00"
# The probe conversation a checkpoint's template must render before it is used.
PROBE_TURNS = (("Hello, who are you?", "An assistant."), ("Reverse: a b c", "c b a"))


class ChatTemplate:
    """A Jinja chat template with the `PromptTemplate` interface.

    Args:
        text: the Jinja source.
        source: where it came from (reported and saved with the run).
        special_tokens: strings the template may use (`bos_token`,
            `eos_token`, ...).

    Raises:
        ConfigError: jinja2 is missing, the template does not compile, or it
            does not render conversations turn by turn.

    Example:
    ```python
    template = ChatTemplate(
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}",
        special_tokens={"eos_token": "</s>"},
    )
    template.prompt_text("hi")  # "<|user|>hi</s><|assistant|>"
    ```
    """

    def __init__(self, text, source="chat template", special_tokens=None):
        self.text = text
        self.source = source
        self.special_tokens = {k: v for k, v in (special_tokens or {}).items() if isinstance(v, str)}
        try:
            import jinja2.sandbox  # noqa: F401 - the sandbox klm's limited one extends
        except ImportError:
            raise ConfigError(
                f"The checkpoint ships a Jinja chat template ({source}); klm renders it only with jinja2's sandbox, "
                "and jinja2 is not installed. Install it (pip install jinja2; it comes with torch), or pass "
                "--template FILE with a klm template. Received: no jinja2"
            ) from None
        environment = limited_sandbox()
        self._environment = environment

        def raise_exception(message):
            raise ValueError(message)

        environment.globals["raise_exception"] = raise_exception
        try:
            self._template = environment.from_string(text)
        except Exception as e:  # noqa: BLE001 - any compile error is a bad template
            raise ConfigError(f"Cannot compile the chat template of {source}: {e}. Received: {text[:80]!r}") from None

    def render(self, messages, add_generation_prompt):
        """The template's text for `messages` (`[{"role", "content"}]`)."""
        try:
            with self._environment.budget(sum(len(str(m.get("content") or "")) for m in messages)):
                return "".join(
                    self._environment.count_output(
                        self._template.generate(
                            messages=messages, add_generation_prompt=add_generation_prompt, **self.special_tokens
                        )
                    )
                )
        except TemplateLimitError as e:
            raise ConfigError(
                f"The {self._what()} exceeded klm's rendering limits: {e}. A chat template runs as "
                "code from the checkpoint; klm stops one that could hang or exhaust memory. Pass --template FILE "
                f"with a klm template instead. Received: a conversation of roles {[m['role'] for m in messages]}"
            ) from None
        except Exception as e:  # noqa: BLE001 - sandbox violations, raise_exception(), undefined names
            raise ConfigError(
                f"The chat template of {self.source} failed to render ({type(e).__name__}: {e}). Pass --template "
                "FILE with a klm template instead. Received: a conversation of roles "
                f"{[m['role'] for m in messages]}"
            ) from None

    def _what(self):
        source = str(self.source)
        return source if source.startswith("chat template") else f"chat template of {source}"

    def check(self):
        """Renders a probe conversation (two user/assistant turns); `ConfigError` naming the source if it fails.

        Called before a checkpoint's template is used, so that a template that
        hangs, exhausts a limit or cannot split turns fails before training.
        """
        self.pieces(list(PROBE_TURNS))
        return self

    def _split_end(self, text):
        """`(response, rest)`: the response without the end-of-turn text."""
        end = self.special_tokens.get("eos_token")
        if end and end in text:
            index = text.rindex(end)
            return text[:index], text[index + len(end) :]
        return text, ""

    def pieces(self, turns, system=None, next_prompt=None):
        """`[(text, is_response)]` of a conversation (see `PromptTemplate.pieces`)."""
        messages = [{"role": "system", "content": system}] if system is not None else []
        out, rendered, carry = [], "", ""
        prompts = [prompt for prompt, _ in turns] + ([next_prompt] if next_prompt is not None else [])
        for index, prompt in enumerate(prompts):
            messages.append({"role": "user", "content": prompt})
            prefix = self.render(messages, add_generation_prompt=True)
            self._check_prefix(rendered, prefix)
            out.append((carry + prefix[len(rendered) :], False))
            if index >= len(turns):
                break
            messages.append({"role": "assistant", "content": turns[index][1]})
            full = self.render(messages, add_generation_prompt=False)
            self._check_prefix(prefix, full)
            response, carry = self._split_end(full[len(prefix) :])
            out.append((response, True))
            rendered = full
        return out

    def _check_prefix(self, before, after):
        if not after.startswith(before):
            raise ConfigError(
                f"The chat template of {self.source} does not render a conversation turn by turn (a longer "
                "conversation changes the text of earlier turns), so klm cannot tell prompt from response tokens. "
                "Pass --template FILE with a klm template. Received: a non-incremental chat template"
            )

    def prompt_text(self, prompt, system=None):
        """The text of a single turn up to where the response starts."""
        return "".join(text for text, _ in self.pieces([], system=system, next_prompt=prompt))

    def single_turn_parts(self):
        """`(before, after)` around a raw prompt (export: the template applied in the graph)."""
        text = self.prompt_text(_SENTINEL)
        if text.count(_SENTINEL) != 1:
            raise ConfigError(
                f"The chat template of {self.source} changes the prompt's text; it cannot be applied "
                "inside an exported graph. Received: a template that rewrites the content"
            )
        before, after = text.split(_SENTINEL)
        return before, after

    def to_dict(self):
        return {"kind": "jinja", "text": self.text, "source": self.source, "special_tokens": self.special_tokens}


def _token_text(value):
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def chat_template_from_config(config, source):
    """A `ChatTemplate` from a `tokenizer_config.json` dict (and its source), or `None` without one."""
    text = config.get("chat_template")
    if isinstance(text, list):  # named templates: the default one
        named = {entry.get("name"): entry.get("template") for entry in text if isinstance(entry, dict)}
        text = named.get("default") or next(iter(named.values()), None)
    if not isinstance(text, str) or not text.strip():
        return None
    special = {name: _token_text(config.get(name)) for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    return ChatTemplate(text, source=source, special_tokens=special).check()


def _find_file(spec, name):
    spec = str(spec)
    if spec.startswith("hf://"):
        try:
            import huggingface_hub

            return Path(huggingface_hub.hf_hub_download(spec[len("hf://") :].strip("/"), name))
        except Exception:  # noqa: BLE001 - no such file, no network: no template
            return None
    path = Path(spec) / name
    return path if path.is_file() else None


def checkpoint_chat_template(spec, tokenizer=None):
    """The chat template a Hugging Face checkpoint ships, or `None`.

    Read from `tokenizer_config.json` or `chat_template.jinja`.
    """
    config_path = _find_file(spec, "tokenizer_config.json")
    config = {}
    if config_path is not None:
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
    jinja_path = _find_file(spec, "chat_template.jinja")
    if jinja_path is not None and not config.get("chat_template"):
        config = dict(config, chat_template=jinja_path.read_text(encoding="utf-8"))
        return chat_template_from_config(config, f"chat template of {spec} (chat_template.jinja)")
    return chat_template_from_config(config, f"chat template of {spec} (tokenizer_config.json)")
