"""Reading supervised fine-tuning data: prompt/response, Alpaca and chat files.

Every format becomes a list of `Conversation`s: an optional system message
and one or more `(prompt, response)` turns. Formats (by extension; JSONL
lines are told apart by their keys, so one file may mix them):

- `.jsonl` / `.json` (one object a line):
  - `{"prompt": ..., "response": ...}`
  - Alpaca: `{"instruction": ..., "input": ..., "output": ...}` (`input`
    optional; a non-empty input joins the instruction after a newline,
    `instruction + "\\n" + input`, as the user's prompt)
  - chat: `{"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}`:
    an optional system message first, then user and assistant turns in
    alternation, ending with an assistant turn (every assistant turn is a
    response: it gets the loss).
- `.tsv` / `.csv`: a header line with `prompt` and `response` columns (or
  `instruction`, `output` and optionally `input`).

So `{"prompt": "reverse: a b", "response": "b a"}`,
`{"instruction": "reverse: a b", "output": "b a"}` and
`{"messages": [{"role": "user", "content": "reverse: a b"}, {"role":
"assistant", "content": "b a"}]}` are the same example.

A malformed line, a missing field, an unknown role, an empty response or a
file with no examples raises `DataError` naming the file and line. Reading
imports no Keras.
"""

import csv
import dataclasses
from pathlib import Path

from klm.data.text.raw_lines import iter_raw_lines
from klm.data.text.sources import load_json_line
from klm.errors import DataError

ROLES = ("system", "user", "assistant")
FORMATS = ("prompt_response", "alpaca", "chat")


@dataclasses.dataclass
class Conversation:
    """One training example: an optional system message and its turns.

    Attributes:
        turns: `(prompt, response)` pairs, in order; every response is
            trained on.
        system: the system message, or `None`.
        source: `"FILE:LINE"`, for error messages and reports.
        format: `"prompt_response"`, `"alpaca"` or `"chat"`.
    """

    turns: list[tuple[str, str]]
    system: str | None = None
    source: str = ""
    format: str = "prompt_response"

    @property
    def texts(self):
        """Every text of the conversation (for training a tokenizer)."""
        texts = [self.system] if self.system else []
        for prompt, response in self.turns:
            texts += [prompt, response]
        return texts


def _where(path, line):
    return f"line {line} of {path}"


def _text(value, field, path, line, allow_empty=True):
    if not isinstance(value, str):
        raise DataError(f"Expected {field!r} to be a string on {_where(path, line)}. Received: {field}={value!r}")
    if not allow_empty and not value.strip():
        raise DataError(
            f"Expected a non-empty {field!r} on {_where(path, line)}: an empty response teaches nothing. "
            f"Received: {field}={value!r}"
        )
    return value


def conversation_from_record(record, path="<data>", line=1):
    """Parses one JSON object (any of the three forms) into a `Conversation`.

    Raises:
        DataError: not an object, a missing or non-string field, an unknown
            role, a badly ordered chat, an empty response.
    """
    source = f"{path}:{line}"
    if not isinstance(record, dict):
        raise DataError(
            f"Expected a JSON object on {_where(path, line)}. Received: {type(record).__name__} {str(record)[:80]}"
        )
    if "messages" in record:
        return _chat(record["messages"], path, line, source)
    if "instruction" in record or "output" in record:
        for field in ("instruction", "output"):
            if field not in record:
                raise DataError(
                    f"Missing field {field!r} on {_where(path, line)} (an Alpaca record needs instruction and "
                    f"output; input is optional). Received: keys {sorted(record)}"
                )
        instruction = _text(record["instruction"], "instruction", path, line)
        extra = _text(record.get("input") or "", "input", path, line)
        output = _text(record["output"], "output", path, line, allow_empty=False)
        prompt = instruction + ("\n" + extra if extra.strip() else "")
        return Conversation([(prompt, output)], source=source, format="alpaca")
    if "prompt" in record or "response" in record:
        for field in ("prompt", "response"):
            if field not in record:
                raise DataError(f"Missing field {field!r} on {_where(path, line)}. Received: keys {sorted(record)}")
        prompt = _text(record["prompt"], "prompt", path, line)
        response = _text(record["response"], "response", path, line, allow_empty=False)
        return Conversation([(prompt, response)], source=source, format="prompt_response")
    raise DataError(
        f"Expected a record with prompt/response, instruction/input/output (Alpaca) or messages (chat) on "
        f"{_where(path, line)}. Received: keys {sorted(record)}"
    )


def _chat(messages, path, line, source):
    where = _where(path, line)
    if not isinstance(messages, list) or not messages:
        raise DataError(f"Expected 'messages' to be a non-empty list on {where}. Received: messages={messages!r}")
    system = None
    turns = []
    pending = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"Expected message {index} on {where} to be an object. Received: {message!r}")
        role = message.get("role")
        if role not in ROLES:
            raise DataError(
                f"Unknown role in message {index} on {where}: expected one of {', '.join(ROLES)}. "
                f"Received: role={role!r}"
            )
        if "content" not in message:
            raise DataError(f"Missing field 'content' in message {index} on {where}. Received: keys {sorted(message)}")
        content = _text(message["content"], "content", path, line, allow_empty=role != "assistant")
        if role == "system":
            if index != 0:
                raise DataError(
                    f"Expected the system message first on {where}. Received: a system message at position {index}"
                )
            system = content
        elif role == "user":
            if pending is not None:
                raise DataError(
                    f"Expected user and assistant messages to alternate on {where}. Received: two user messages "
                    f"in a row (positions {index - 1} and {index})"
                )
            pending = content
        else:
            if pending is None:
                raise DataError(
                    f"Expected a user message before the assistant message {index} on {where}. Received: "
                    f"role='assistant' at position {index}"
                )
            turns.append((pending, content))
            pending = None
    if pending is not None or not turns:
        raise DataError(
            f"Expected the chat on {where} to end with an assistant message (the response to learn). "
            f"Received: roles {[m.get('role') for m in messages]}"
        )
    return Conversation(turns, system=system, source=source, format="chat")


def clean_conversations(conversations, cleaner):
    """The conversations with every text (system message, prompts, responses) cleaned by `cleaner`.

    SFT data goes through the same `TextCleaner` as pretraining text
    (`--lowercase`, `--scrub-privacy`: e-mails, secrets, cards, phones become
    placeholders), before a tokenizer is trained on it and before it is
    encoded, so that nothing scrubbed reaches the vocabulary or the batches.

    Args:
        conversations: `Conversation`s (from `read_conversations`).
        cleaner: a `klm.data.text.cleaner.TextCleaner`; its counts grow.

    Returns:
        A new list of `Conversation`s.

    Raises:
        DataError: a response that cleaning leaves empty (naming file and line).
    """

    def clean(text):
        cleaned = cleaner.clean(text)
        return "" if cleaned is None else cleaned

    out = []
    for conversation in conversations:
        turns = []
        for prompt, response in conversation.turns:
            cleaned = clean(response)
            if not cleaned.strip():
                raise DataError(
                    f"Expected a non-empty response on {conversation.source} after cleaning: an empty response "
                    f"teaches nothing. Received: response={response[:80]!r}"
                )
            turns.append((clean(prompt), cleaned))
        system = None if conversation.system is None else clean(conversation.system)
        out.append(dataclasses.replace(conversation, turns=turns, system=system))
    return out


def read_conversations(path):
    """Reads an SFT data file into a list of `Conversation`s (see the module docstring).

    Args:
        path: a `.jsonl`/`.json`, `.tsv` or `.csv` file.

    Returns:
        A non-empty list of `Conversation`.

    Raises:
        DataError: a missing file, a malformed line, a missing field, an
            unknown role, an empty response, or no examples (naming the file
            and line).

    Example:
    ```python
    conversations = read_conversations("train.jsonl")
    conversations[0].turns  # [("reverse: a b c", "c b a")]
    ```
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SFT data file not found. Received: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        conversations = _read_table(path, "\t" if suffix == ".tsv" else ",")
    else:
        conversations = _read_jsonl(path)
    if not conversations:
        raise DataError(f"{path} holds no examples. Received: an empty file")
    return conversations


def _decode(raw, path, number):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"Invalid UTF-8 on {_where(path, number)}: {e}. Received: {raw[:60]!r}") from None


def _read_jsonl(path):
    conversations = []
    # Lines come from klm's one text reader: binary files refused, a leading byte-order mark dropped.
    for raw, number in iter_raw_lines(path):
        line = _decode(raw, path, number)
        if not line.strip():
            continue
        record = load_json_line(line, path, number)
        conversations.append(conversation_from_record(record, path, number))
    return conversations


def _read_table(path, delimiter):
    conversations = []

    def lines():
        for raw, number in iter_raw_lines(path):
            yield _decode(raw, path, number) + "\n"

    reader = csv.DictReader(lines(), delimiter=delimiter)
    try:
        columns = reader.fieldnames or []
        if {"prompt", "response"} <= set(columns):
            kind = "prompt_response"
        elif {"instruction", "output"} <= set(columns):
            kind = "alpaca"
        else:
            raise DataError(
                f"Expected a header line with prompt and response columns (or instruction, input, output) in "
                f"{path}. Received: columns {columns}"
            )
        for row in reader:
            number = reader.line_num
            if None in row or any(value is None for value in row.values()):
                raise DataError(
                    f"Expected {len(columns)} columns on {_where(path, number)}. Received: {list(row.values())}"
                )
            if not any((value or "").strip() for value in row.values()):
                continue
            record = dict(row) if kind == "alpaca" else {"prompt": row["prompt"], "response": row["response"]}
            if kind == "alpaca":
                record = {k: record[k] for k in ("instruction", "input", "output") if k in record}
            conversations.append(conversation_from_record(record, path, number))
    except csv.Error as e:
        raise DataError(f"Malformed {'TSV' if delimiter == chr(9) else 'CSV'} in {path}: {e}") from None
    return conversations
