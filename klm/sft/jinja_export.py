"""A run's prompt template as a Transformers chat template (`klm export --format hf`).

Transformers applies a checkpoint's chat template (Jinja, `chat_template` in
`tokenizer_config.json`) with `tokenizer.apply_chat_template`. An SFT run
trained with a checkpoint's own Jinja template exports that template as it
is. A klm text template (`{system}`, `{prompt}`, `{response}` slots) is
translated into an equivalent Jinja template: a user message renders the
text up to and including `{prompt}` (with the `{system}` line in the first
turn when there is a system message), an assistant message the text
between `{prompt}` and `{response}`, its content and the end-of-text token
(klm appends it after every response), and `add_generation_prompt` the text
between `{prompt}` and `{response}`. The translation is kept only when it
renders a probe conversation exactly as klm does (`jinja_for_template`).
"""

import json

from klm.errors import ConfigError
from klm.sft.chat_template import ChatTemplate

PROBE_SYSTEM = "Answer briefly."
PROBE_TURNS = (("Hello, who are you?", "An assistant."), ("Reverse: a b c", "c b a"))


def _literal(text):
    """A Jinja expression printing `text` exactly (a string literal; Jinja decodes its escapes)."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"


def _parts(pieces):
    """`(before_prompt, generation_prompt, has_system)` from `PromptTemplate` pieces `[(literal, slot)]`.

    `before_prompt` is the literal text before `{system}` (if any) and before
    `{prompt}`; literals without a slot (split at `{{`/`}}`) are joined.
    """
    before, text, has_system, generation = [], "", False, None
    for literal, slot in pieces:
        text += literal
        if slot == "system":
            before.append(text)
            text, has_system = "", True
        elif slot == "prompt":
            before.append(text)
            text = ""
        elif slot == "response":
            generation = text
            break
    return before, generation, has_system


def text_template_to_jinja(template, end_text):
    """A Jinja chat template equivalent to the klm `PromptTemplate` `template`.

    Args:
        template: a `klm.sft.prompt_template.PromptTemplate`.
        end_text: the end-of-text token's text, written after each response.
    """
    with_system, _, has_system = _parts(template._with_system)
    without_system, generation, _ = _parts(template._without_system)
    user_plain = "".join(_literal(text) for text in without_system)
    first_with_system = user_plain  # a template without {system} ignores a system message, as klm does
    if has_system:
        first_with_system = _literal(with_system[0]) + "{{ messages[0]['content'] }}" + _literal(with_system[1])
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{%- if loop.index0 == 1 and messages[0]['role'] == 'system' -%}"
        + first_with_system
        + "{{ message['content'] }}{%- else -%}"
        + user_plain
        + "{{ message['content'] }}{%- endif -%}"
        "{%- elif message['role'] == 'assistant' -%}"
        + _literal(generation)
        + "{{ message['content'] }}"
        + _literal(end_text)
        + "{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt and messages[-1]['role'] == 'user' -%}" + _literal(generation) + "{%- endif -%}"
    )


def probe_messages(system=True):
    messages = [{"role": "system", "content": PROBE_SYSTEM}] if system else []
    for prompt, response in PROBE_TURNS:
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return messages


def klm_rendering(template, end_text, system=True):
    """The text klm trains on for the probe conversation (responses followed by the end-of-text text)."""
    pieces = template.pieces(list(PROBE_TURNS), system=PROBE_SYSTEM if system else None)
    return "".join(text + (end_text if is_response else "") for text, is_response in pieces)


def jinja_for_template(template, end_text):
    """`(jinja_text, note)`: the Jinja chat template to export for a run's template, or `(None, why not)`.

    A run's Jinja template (a checkpoint's) is exported as it is; a klm text
    template is translated and kept only if it renders the probe
    conversations (with and without a system message) exactly as klm does.
    """

    if isinstance(template, ChatTemplate):
        return template.text, f"the run's chat template ({template.source})"
    try:
        text = text_template_to_jinja(template, end_text)
        check = ChatTemplate(text, source="exported template")
        for system in (True, False):
            messages = probe_messages(system)
            rendered = check.render(messages, add_generation_prompt=False)
            if rendered != klm_rendering(template, end_text, system):
                raise ConfigError("renders differently")
            prompt_only = check.render(messages[:-1], add_generation_prompt=True)
            if not rendered.startswith(prompt_only):
                raise ConfigError("splits prompt and response differently")
    except ConfigError as e:
        return None, f"the run's klm template ({template.source}) has no exact Jinja equivalent ({e}); none was written"
    return text, f"the run's klm template ({template.source}), translated to an equivalent Jinja chat template"
