import json

import pytest

from klm.errors import ConfigError
from klm.sft.chat_template import ChatTemplate, checkpoint_chat_template
from klm.sft.prompt_template import template_from_dict

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_chatml_pieces_split_prompt_and_response():
    template = ChatTemplate(CHATML, special_tokens={"eos_token": "<|im_end|>"})
    pieces = template.pieces([("hi", "hello"), ("bye", "see you")], system="be brief", next_prompt="again")
    assert pieces == [
        ("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", False),
        ("hello", True),  # the end-of-turn text is cut: klm appends the end-of-text token
        ("\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n", False),
        ("see you", True),
        ("\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n", False),
    ]
    assert template.single_turn_parts() == ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")
    again = template_from_dict(template.to_dict())
    assert again.pieces([("a", "b")]) == template.pieces([("a", "b")])


def test_sandbox_refuses_python_internals():
    template = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ConfigError, match="failed to render .*Security"):
        template.prompt_text("x")
    with pytest.raises(ConfigError, match="Cannot compile"):
        ChatTemplate("{% for %}")
    raising = ChatTemplate("{{ raise_exception('only user and assistant roles') }}")
    with pytest.raises(ConfigError, match="only user and assistant roles"):
        raising.prompt_text("x")


def test_non_incremental_template_is_refused():
    # Renders only the last message: earlier turns' text changes as the conversation grows.
    template = ChatTemplate("{{ messages[-1]['content'] }}{% if add_generation_prompt %}>{% endif %}")
    with pytest.raises(ConfigError, match="turn by turn"):
        template.pieces([("a", "b")])


def test_checkpoint_chat_template_from_tokenizer_config(tmp_path):
    assert checkpoint_chat_template(tmp_path) is None
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": CHATML, "eos_token": {"content": "<|im_end|>"}, "bos_token": None})
    )
    template = checkpoint_chat_template(tmp_path)
    assert "tokenizer_config.json" in template.source
    assert template.special_tokens == {"eos_token": "<|im_end|>"}


def test_without_jinja2_it_refuses_clearly(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_jinja(name, *args, **kwargs):
        if name.startswith("jinja2"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jinja)
    with pytest.raises(ConfigError, match="jinja2 is not installed.*--template FILE"):
        ChatTemplate(CHATML)


@pytest.mark.parametrize(
    "source, reason",
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "loop iterations"),
        ("{% set r = range(3000)|list %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}", "loop iterations"),
        ("{{ range(10000000)|length }}", "range() of 10,000,000 items"),
        ("{{ 'a' * 1000000000 }}", "a repetition of 1,000,000,000 items"),
        ("{{ 2 ** 100000000 }}", "an exponent"),
        ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "characters of output"),
    ],
)
def test_templates_that_would_hang_or_exhaust_memory_are_refused(source, reason):
    from klm.sft.chat_template import chat_template_from_config

    with pytest.raises(ConfigError, match="exceeded klm's rendering limits") as info:
        chat_template_from_config({"chat_template": source}, "chat template of ckpt (tokenizer_config.json)")
    assert reason in str(info.value) and "The chat template of ckpt (tokenizer_config.json)" in str(info.value)


def test_bounded_sandbox_renders_real_templates_as_before():
    template = ChatTemplate(CHATML, special_tokens={"eos_token": "<|im_end|>"}).check()
    looped = ChatTemplate(
        "{% for m in messages %}{{ loop.index }}{% if loop.last %}.{% endif %}{{ m.content }}{% endfor %}"
        "{{ range(3)|join(',') }}"
    )
    assert looped.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], False) == "1a2.b0,1,2"
    assert template.prompt_text("hi").endswith("<|im_start|>assistant\n")
