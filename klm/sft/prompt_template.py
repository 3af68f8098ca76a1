"""`PromptTemplate`: how a prompt and its response are laid out as text.

A template is a small text with three slots, and nothing else is ever
evaluated (no code, no attribute access: any other `{...}` is an error):

    {system}                  optional; the line that holds it is dropped when
                              a conversation has no system message, and is
                              rendered in the first turn only
    ...{prompt}...            the user's prompt
    ...{response}             the response; must come last (only whitespace
                              after it)

Everything before `{response}` (role markers included) is the *prompt part*
of a turn; the response is tokenized on its own and followed by the
tokenizer's end-of-text token. A chat renders turn after turn, each turn
with the template. `{{` and `}}` are literal braces.

klm's default template (`DEFAULT_TEMPLATE`) for its own models:

    {system}
    user: {prompt}
    assistant: {response}
"""

import dataclasses
import string
from pathlib import Path

from klm.errors import ConfigError
from klm.sft.chat_template import ChatTemplate

SLOTS = ("system", "prompt", "response")
DEFAULT_TEMPLATE = "{system}\nuser: {prompt}\nassistant: {response}"


@dataclasses.dataclass
class PromptTemplate:
    """A prompt template with `{system}`, `{prompt}` and `{response}` slots.

    Args:
        text: the template (see the module docstring).
        source: where it came from, for reports (`"klm default"`,
            `"file templates/qa.txt"`).

    Raises:
        ConfigError: a missing or repeated slot, an unknown slot, text after
            `{response}`.

    Example:
    ```python
    template = PromptTemplate("Q: {prompt}\\nA: {response}")
    template.prompt_text("2 + 2")  # "Q: 2 + 2\\nA: "
    ```
    """

    text: str = DEFAULT_TEMPLATE
    source: str = "klm default"

    def __post_init__(self):
        self._with_system = self._parse(self.text)
        names = [name for _, name in self._with_system if name]
        for slot in ("prompt", "response"):
            if names.count(slot) != 1:
                raise ConfigError(
                    f"Expected the template to hold {{{slot}}} exactly once. Received: --template={self.source!r} "
                    f"with {names.count(slot)}"
                )
        if names.count("system") > 1 or names[-1] != "response" or names.index("prompt") > names.index("response"):
            raise ConfigError(
                "Expected the template's slots in the order [{system}] {prompt} {response}, each once, with "
                f"{{response}} last. Received: --template={self.source!r} with slots {names}"
            )
        if self._with_system[-1][0].strip():
            raise ConfigError(
                "Expected only whitespace after {response} in the template (the end-of-text token ends a response). "
                f"Received: --template={self.source!r} ending with {self._with_system[-1][0]!r}"
            )
        self._without_system = self._parse(self._drop_system_line(self.text))

    def _parse(self, text):
        """`[(literal, slot)]` pairs; the last has slot `None`."""
        pieces = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as e:
            raise ConfigError(
                f"Cannot parse the template: {e} (write {{{{ and }}}} for literal braces). "
                f"Received: --template={self.source!r}"
            ) from None
        for literal, name, spec, conversion in parsed:
            if name is not None and (name not in SLOTS or spec or conversion):
                raise ConfigError(
                    f"Unknown template slot {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}: a template may use only {{system}}, {{prompt}} and "
                    f"{{response}} (write {{{{ and }}}} for literal braces). Received: --template={self.source!r}"
                )
            pieces.append((literal, name))
        if not pieces or pieces[-1][1] is not None:
            pieces.append(("", None))
        return pieces

    @staticmethod
    def _drop_system_line(text):
        if "{system}" not in text:
            return text
        lines = text.split("\n")
        kept = [line for line in lines if "{system}" not in line]
        return "\n".join(kept)

    @classmethod
    def from_file(cls, path):
        """Reads a template file (UTF-8 text; a trailing newline is ignored)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"Cannot read the template file: {e}. Received: --template={str(path)!r}") from None
        return cls(text.rstrip("\n"), source=f"file {path}")

    def _render_until_response(self, pieces, prompt, system):
        out = []
        for literal, name in pieces:
            out.append(literal)
            if name == "response":
                break
            if name == "prompt":
                out.append(prompt)
            elif name == "system":
                out.append(system or "")
        return "".join(out)

    def prompt_text(self, prompt, system=None):
        """The text of a turn up to where the response starts."""
        pieces = self._with_system if system is not None else self._without_system
        return self._render_until_response(pieces, prompt, system)

    def single_turn_parts(self):
        """`(before, after)`: a single-turn prompt text is `before + prompt + after` (no system message)."""
        sentinel = "\x00klm-prompt\x00"
        text = self.prompt_text(sentinel)
        before, after = text.split(sentinel)
        return before, after

    def pieces(self, turns, system=None, next_prompt=None):
        """`[(text, is_response)]` of a conversation, in order.

        Args:
            turns: `(prompt, response)` pairs.
            system: the system message or `None` (rendered in the first turn).
            next_prompt: a last user prompt still to be answered (generation):
                its prompt part ends the list.

        Each response is followed by the end-of-text token when tokenized
        (`klm.sft.encode_conversation`).
        """
        out = []
        prompts = [prompt for prompt, _ in turns] + ([next_prompt] if next_prompt is not None else [])
        for index, prompt in enumerate(prompts):
            out.append((self.prompt_text(prompt, system if index == 0 else None), False))
            if index < len(turns):
                out.append((turns[index][1], True))
        return out

    def to_dict(self):
        """JSON-ready form for a run's `config.json`."""
        return {"kind": "text", "text": self.text, "source": self.source}


def template_from_dict(data):
    """The template a run recorded (`PromptTemplate.to_dict` or `ChatTemplate.to_dict`)."""
    if data.get("kind") == "jinja":
        return ChatTemplate(
            data["text"], source=data.get("source", "chat template"), special_tokens=data.get("special_tokens") or {}
        )
    return PromptTemplate(data["text"], source=data.get("source", "run"))
