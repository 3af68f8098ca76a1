import pytest

from klm.errors import ConfigError
from klm.sft.prompt_template import DEFAULT_TEMPLATE, PromptTemplate, template_from_dict


def test_default_template():
    template = PromptTemplate()
    assert template.text == DEFAULT_TEMPLATE
    assert template.prompt_text("reverse: a b") == "user: reverse: a b\nassistant: "
    assert template.prompt_text("hi", system="be brief") == "be brief\nuser: hi\nassistant: "
    assert template.single_turn_parts() == ("user: ", "\nassistant: ")
    pieces = template.pieces([("hi", "hello"), ("bye", "see you")], system="sys", next_prompt="again")
    assert pieces == [
        ("sys\nuser: hi\nassistant: ", False),
        ("hello", True),
        ("user: bye\nassistant: ", False),
        ("see you", True),
        ("user: again\nassistant: ", False),
    ]


def test_template_file_and_round_trip(tmp_path):
    path = tmp_path / "qa.txt"
    path.write_text("<|q|> {prompt} {{literal}}\n<|a|> {response}\n", encoding="utf-8")
    template = PromptTemplate.from_file(path)
    assert template.prompt_text("2 + 2") == "<|q|> 2 + 2 {literal}\n<|a|> "
    assert template.source == f"file {path}"
    again = template_from_dict(template.to_dict())
    assert again.prompt_text("x") == template.prompt_text("x")


@pytest.mark.parametrize(
    "text, message",
    [
        ("Q: {prompt}", "{response} exactly once"),
        ("A: {response}", "{prompt} exactly once"),
        ("{prompt} {prompt} {response}", "exactly once"),
        ("{response} {prompt}", "order"),
        ("{prompt} {response} thanks", "only whitespace after {response}"),
        ("{prompt.__class__} {response}", "Unknown template slot"),
        ("{prompt!r} {response}", "Unknown template slot"),
        ("{user} {prompt} {response}", "Unknown template slot"),
        ("{prompt} {response", "Cannot parse"),
    ],
)
def test_bad_templates(text, message):
    with pytest.raises(ConfigError, match="--template") as info:
        PromptTemplate(text, source="t.txt")
    assert message in str(info.value)


def test_missing_template_file(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read the template file"):
        PromptTemplate.from_file(tmp_path / "none.txt")
