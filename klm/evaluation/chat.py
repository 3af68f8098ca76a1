"""Chat templates for lm-eval's `--apply_chat_template`: an SFT run's own template, or a checkpoint's Jinja one.

lm-eval hands the model a conversation (`[{"role", "content"}]`: an optional
system message, few-shot examples as user/assistant turns, the question as
the last user turn) and asks for the prompt text. An SFT run renders it with
the template it was trained with (`klm.sft`'s `PromptTemplate` or
`ChatTemplate`); a Transformers checkpoint with its shipped Jinja template,
in jinja2's sandbox. In a klm template each earlier assistant turn is
followed by the end-of-text token during training; here it is followed by
that token's text when the tokenizer reads the text back as that token, and
by nothing otherwise.
"""

from klm.errors import ConfigError
from klm.evaluation.conventions import transformers_source
from klm.generate import run_template
from klm.sft.chat_template import ChatTemplate, checkpoint_chat_template


class RunChatTemplate:
    """The template of an SFT run or checkpoint, rendering lm-eval's chat histories."""

    def __init__(self, template, source):
        self.template = template
        self.source = source
        self.text = getattr(template, "text", str(template))

    def render(self, chat_history, add_generation_prompt, lm):

        messages = [dict(m) for m in chat_history]
        if isinstance(self.template, ChatTemplate):  # Jinja: the whole history at once, as Transformers does
            return self.template.render(messages, add_generation_prompt=add_generation_prompt)
        system = None
        if messages and messages[0].get("role") == "system":
            system = messages.pop(0).get("content")
        turns, pending = [], None
        for message in messages:
            role, content = message.get("role"), message.get("content", "")
            if role == "user":
                if pending is not None:  # two user turns in a row: join them
                    content = pending + "\n\n" + content
                pending = content
            elif role == "assistant" and pending is not None:
                turns.append((pending, content))
                pending = None
            else:
                raise ConfigError(
                    f"Expected a chat of user and assistant turns after an optional system message. Received: a "
                    f"{role!r} message in position {messages.index(message)}"
                )
        pieces = self.template.pieces(turns, system=system, next_prompt=pending if add_generation_prompt else None)
        end = _end_text(lm)
        return "".join(text + (end if is_response else "") for text, is_response in pieces)


def _end_text(lm):
    end_id = lm.eot_token_id
    if end_id is None:
        return ""
    text = lm.tok_decode([end_id], skip_special_tokens=False)
    return text if text and lm.tok_encode(text, add_special_tokens=False) == [end_id] else ""


def checkpoint_template(checkpoint):
    """The chat template of an SFT run or a Transformers checkpoint (`ConfigError` when it has none)."""

    template = run_template(checkpoint)
    if template is not None:
        return RunChatTemplate(template, template.source)

    spec = transformers_source(checkpoint)
    jinja = checkpoint_chat_template(spec) if spec is not None else None
    if jinja is not None:
        return RunChatTemplate(jinja, jinja.source)
    raise ConfigError(
        f"Expected an instruction-tuned model for --apply-chat-template: an SFT run (klm finetune --task sft) or a "
        f"checkpoint that ships a chat template. Received: RUN={str(checkpoint.path)!r} without one"
    )
