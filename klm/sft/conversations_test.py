import json

import pytest

from klm.errors import DataError
from klm.sft.conversations import Conversation, conversation_from_record, read_conversations


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_three_jsonl_forms_and_tables_are_the_same_example(tmp_path):
    chat = {"messages": [{"role": "user", "content": "reverse: a b"}, {"role": "assistant", "content": "b a"}]}
    jsonl = write(
        tmp_path / "d.jsonl",
        [
            json.dumps({"prompt": "reverse: a b", "response": "b a"}),
            "",
            json.dumps({"instruction": "reverse: a b", "output": "b a"}),
            json.dumps({"instruction": "reverse:", "input": "a b", "output": "b a"}),
            json.dumps(chat),
        ],
    )
    conversations = read_conversations(jsonl)
    assert [c.format for c in conversations] == ["prompt_response", "alpaca", "alpaca", "chat"]
    assert [c.turns for c in conversations[:2]] == [[("reverse: a b", "b a")]] * 2
    assert conversations[2].turns == [("reverse:\na b", "b a")]  # instruction + "\n" + input
    assert conversations[3].turns == conversations[0].turns
    assert conversations[1].source.endswith("d.jsonl:3")
    tsv = tmp_path / "d.tsv"
    tsv.write_text("prompt\tresponse\nreverse: a b\tb a\n", encoding="utf-8")
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('instruction,input,output\n"reverse: a b",,b a\n', encoding="utf-8")
    assert read_conversations(tsv)[0].turns == read_conversations(csv_path)[0].turns == conversations[0].turns


def test_chat_with_system_and_several_turns():
    record = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
            {"role": "assistant", "content": "see you"},
        ]
    }
    conversation = conversation_from_record(record)
    assert conversation == Conversation(
        [("hi", "hello"), ("bye", "see you")], system="be brief", source="<data>:1", format="chat"
    )
    assert conversation.texts == ["be brief", "hi", "hello", "bye", "see you"]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "x", "response": ', "Malformed JSON on line 2"),
        ('["prompt", "response"]', "Expected a JSON object on line 2"),
        ('{"prompt": "x"}', "Missing field 'response' on line 2"),
        ('{"instruction": "x"}', "Missing field 'output' on line 2"),
        ('{"prompt": "x", "response": "  "}', "non-empty 'response' on line 2"),
        ('{"instruction": "x", "output": ""}', "non-empty 'output' on line 2"),
        ('{"prompt": 3, "response": "y"}', "'prompt' to be a string on line 2"),
        ('{"text": "x"}', "prompt/response, instruction/input/output"),
        ('{"messages": [{"role": "robot", "content": "x"}]}', "Unknown role in message 0 on line 2"),
        ('{"messages": [{"role": "user", "content": "x"}]}', "end with an assistant message"),
        (
            '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}',
            "non-empty 'content' on line 2",
        ),
        ('{"messages": [{"role": "assistant", "content": "x"}]}', "user message before the assistant"),
        ('{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}', "alternate"),
        (
            '{"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]}',
            "system message first",
        ),
        ('{"messages": [{"role": "user"}]}', "Missing field 'content'"),
        ('{"messages": []}', "non-empty list"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path / "bad.jsonl", ['{"prompt": "ok", "response": "fine"}', line])
    with pytest.raises(DataError, match="bad.jsonl") as info:
        read_conversations(path)
    assert message in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_conversations(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no examples"):
        read_conversations(write(tmp_path / "empty.jsonl", ["", "  "]))
    table = tmp_path / "t.tsv"
    table.write_text("question\tanswer\nx\ty\n", encoding="utf-8")
    with pytest.raises(DataError, match="prompt and response columns"):
        read_conversations(table)
    table.write_text("prompt\tresponse\nx\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2 of"):
        read_conversations(table)
    table.write_text("prompt\tresponse\nx\t\n", encoding="utf-8")
    with pytest.raises(DataError, match="non-empty 'response' on line 2"):
        read_conversations(table)
    (tmp_path / "b.jsonl").write_bytes(b'{"prompt": "\xff", "response": "y"}\n')
    with pytest.raises(DataError, match="Invalid UTF-8 on line 1"):
        read_conversations(tmp_path / "b.jsonl")


@pytest.mark.parametrize(
    "name, content",
    [
        ("d.jsonl", '{"prompt": "reverse: a b", "response": "b a"}\n'),
        ("d.csv", "prompt,response\nreverse: a b,b a\n"),
        ("d.tsv", "prompt\tresponse\nreverse: a b\tb a\n"),
    ],
)
def test_byte_order_mark_is_dropped(tmp_path, name, content):
    # Issue 22, items 18-19: "Malformed JSON ... decode using utf-8-sig" and a missing 'prompt' column before.
    path = tmp_path / name
    path.write_text("\ufeff" + content, encoding="utf-8")
    assert read_conversations(path)[0].turns == [("reverse: a b", "b a")]


def test_deeply_nested_json_line_is_a_data_error(tmp_path):
    # Issue 22, item 10: RecursionError before.
    path = write(tmp_path / "d.jsonl", ['{"prompt": "a", "response": "b"}', "[" * 100_000])
    with pytest.raises(DataError, match=r"Malformed JSON on line 2 of .*d\.jsonl \(.*nested too deeply"):
        read_conversations(path)
