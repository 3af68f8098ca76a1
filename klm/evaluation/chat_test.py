"""`RunChatTemplate`: lm-eval's chat histories in a klm template and in a Jinja chat template."""

import pytest

pytest.importorskip("lm_eval", reason="lm-eval is klm's optional `eval` extra (pip install klm[eval])")
pytest.importorskip("transformers")

from klm.errors import ConfigError  # noqa: E402
from klm.evaluation.chat import RunChatTemplate, checkpoint_template  # noqa: E402
from klm.pretrained import testing  # noqa: E402

HISTORY = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "3 + 3?"},
]


@pytest.fixture(scope="module")
def lm():
    from klm.evaluation.harness import KlmLM

    return KlmLM(testing.cached_hf_checkpoint("gpt2"), batch_size=2)


def test_klm_template_renders_few_shot_turns(lm):
    from klm.sft.prompt_template import PromptTemplate

    template = RunChatTemplate(PromptTemplate(), "klm default")
    text = template.render(HISTORY, True, lm)
    # The GPT-2 tokenizer reads "<|endoftext|>" back as its end-of-text token, so it follows each answer.
    assert text == "Answer briefly.\nuser: 2 + 2?\nassistant: 4<|endoftext|>user: 3 + 3?\nassistant: "
    with pytest.raises(ConfigError, match="user and assistant turns"):
        template.render([{"role": "tool", "content": "x"}], True, lm)


def test_jinja_template_renders_whole_history(lm):
    from klm.sft.chat_template import ChatTemplate

    jinja = ChatTemplate(
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}",
        special_tokens={"eos_token": "</s>"},
    )
    text = RunChatTemplate(jinja, "test").render(HISTORY, True, lm)
    assert text == "<system>Answer briefly.</s><user>2 + 2?</s><assistant>4</s><user>3 + 3?</s><assistant>"


def test_checkpoint_without_template_is_refused(lm):
    with pytest.raises(ConfigError, match="--apply-chat-template"):
        checkpoint_template(lm.checkpoint)
