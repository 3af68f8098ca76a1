import json

from klm.sft.config import SftConfig
from klm.sft.encoding import encode_conversations
from klm.sft.prompt_template import PromptTemplate
from klm.sft.recipe import _train_tokenizer, read_sft_data
from klm.sft.testing import PII_FRAGMENTS, pii_records


def write_records(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return str(path)


# Issue 22, item 6: SFT never called the scrubber, and config.json said scrub_privacy: true.
def test_scrub_privacy_reaches_neither_the_vocabulary_nor_the_encoded_data(tmp_path):
    train = write_records(tmp_path / "pii.jsonl", pii_records())
    config = SftConfig(train=train, valid=train, scrub_privacy=True, seq_len=64)
    conversations, valid, _, report = read_sft_data(config)
    # Counted over train and valid (the same file here).
    assert report["privacy_email"] == 4 and report["privacy_secret"] == 6
    assert report["privacy_card"] == 4 and report["privacy_phone"] == 4
    texts = " ".join(text for conversation in conversations + valid for text in conversation.texts).lower()
    assert all(fragment not in texts for fragment in PII_FRAGMENTS), texts
    assert conversations[0].turns[0][1] == "noted, password=<secret> and key <secret>"
    template = PromptTemplate()
    tokenizer = _train_tokenizer(config, conversations, template)
    vocabulary = " ".join(tokenizer.get_vocabulary()).lower()
    assert "email" in vocabulary and "secret" in vocabulary
    assert all(fragment not in vocabulary for fragment in PII_FRAGMENTS), vocabulary
    examples, _ = encode_conversations(conversations, template, tokenizer, 64)
    decoded = " ".join(tokenizer.id_to_token(int(i)) for example in examples for i in example.token_ids)
    assert all(fragment not in decoded for fragment in PII_FRAGMENTS)


def test_without_cleaning_flags_the_data_is_used_as_written(tmp_path):
    train = write_records(tmp_path / "d.jsonl", [{"prompt": "Two  Spaces\nand a line", "response": "Kept  As Is"}])
    conversations, _, _, report = read_sft_data(SftConfig(train=train))
    assert report is None and conversations[0].turns == [("Two  Spaces\nand a line", "Kept  As Is")]
    # The cleaning flags clean like pretraining's, but keep whitespace (newlines matter in responses).
    conversations, _, _, report = read_sft_data(SftConfig(train=train, lowercase=True))
    assert conversations[0].turns == [("two  spaces\nand a line", "kept  as is")] and report["lowercased"] == 2
