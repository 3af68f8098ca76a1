import pytest

from klm.generate import reply_prompt_ids
from klm.serve.engine import ServedModel, default_model_name
from klm.serve.schema import ApiError, Message
from klm.serve.testing import make_lm_run, make_sft_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engine")
    return make_lm_run(folder / "lm"), make_sft_run(folder / "sft")


def messages(*pairs):
    return [Message(role=role, content=content) for role, content in pairs]


def test_chat_prompts_are_the_template_klm_generate_applies(runs):
    served = ServedModel.load(runs[1])
    assert served.name == "sft" and served.template is not None
    conversation = messages(
        ("system", "be brief"), ("user", "the cat"), ("assistant", "sat on"), ("user", "hello world")
    )
    expected = reply_prompt_ids(served.checkpoint, "hello world", history=[("the cat", "sat on")], system="be brief")
    assert served.chat_prompt_ids(conversation) == expected
    assert served.chat_prompt_ids(messages(("user", "the cat"))) == reply_prompt_ids(served.checkpoint, "the cat")
    parts = [Message(role="user", content=[{"type": "text", "text": "the "}, {"type": "text", "text": "cat"}])]
    assert served.chat_prompt_ids(parts) == reply_prompt_ids(served.checkpoint, "the cat")
    assert served.completion_prompt_ids("the cat") == reply_prompt_ids(served.checkpoint, "the cat", raw=True)


@pytest.mark.parametrize(
    "conversation, param",
    [
        ([("user", "a"), ("user", "b")], "messages.1.role"),
        ([("system", "s"), ("assistant", "a")], "messages.1.role"),
        ([("user", "a"), ("assistant", "b")], "messages"),
        ([("system", "s")], "messages"),
    ],
)
def test_conversations_of_another_shape_are_refused(runs, conversation, param):
    served = ServedModel.load(runs[1])
    with pytest.raises(ApiError) as error:
        served.chat_prompt_ids(messages(*conversation))
    assert error.value.status == 400 and error.value.param == param and "Received" in error.value.message


def test_a_model_without_template_takes_one_user_message_as_is(runs):
    served = ServedModel.load(runs[0], name="tiny")
    assert served.template is None and served.name == "tiny"
    assert served.chat_prompt_ids(messages(("user", "the cat"))) == served.completion_prompt_ids("the cat")
    with pytest.raises(ApiError, match="no chat template"):
        served.chat_prompt_ids(messages(("system", "s"), ("user", "the cat")))


def test_response_budget_fits_the_context(runs):
    served = ServedModel.load(runs[0], default_max_tokens=100)
    assert served.context_length == 48  # the run's learned positions
    assert served.response_budget([1] * 8, None) == 40
    assert served.response_budget([1] * 8, 5) == 5
    with pytest.raises(ApiError, match="max_tokens <= 40") as error:
        served.response_budget([1] * 8, 41)
    assert error.value.code == "context_length_exceeded" and error.value.param == "max_tokens"
    with pytest.raises(ApiError, match="prompt of 48 tokens"):
        served.response_budget([1] * 48, None, prompt_param="prompt")


def test_default_model_names():
    assert default_model_name("gpt2_base_en") == "gpt2_base_en"
    assert default_model_name("hf://org/name") == "hf://org/name"
