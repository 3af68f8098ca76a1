import pytest

from klm.sft.chat_template import ChatTemplate
from klm.sft.jinja_export import jinja_for_template, klm_rendering, probe_messages, text_template_to_jinja
from klm.sft.prompt_template import PromptTemplate


@pytest.mark.parametrize(
    "text",
    [
        "{system}\nuser: {prompt}\nassistant: {response}",  # klm's default
        "Q: {prompt}\nA: {response}",  # no {system}: a system message is ignored, as klm does
        'System: {system}\n### "Question" {{x}}: {prompt}\n### Answer \u00e9\U0001f600: {response}',
    ],
)
def test_text_templates_translate_to_equivalent_jinja(text):
    template = PromptTemplate(text)
    jinja, note = jinja_for_template(template, "<|endoftext|>")
    assert jinja is not None and "translated" in note
    chat = ChatTemplate(jinja)
    for system in (True, False):
        messages = probe_messages(system)
        assert chat.render(messages, add_generation_prompt=False) == klm_rendering(template, "<|endoftext|>", system)
    # A generation prompt ends where klm's prompt part ends.
    user = [{"role": "user", "content": "hi"}]
    assert chat.render(user, add_generation_prompt=True) == template.prompt_text("hi")


def test_a_jinja_run_template_is_exported_as_is():
    template = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}", source="chat template of x")
    assert jinja_for_template(template, "</s>") == (template.text, "the run's chat template (chat template of x)")
    assert "{%- for message in messages -%}" in text_template_to_jinja(PromptTemplate(), "")
