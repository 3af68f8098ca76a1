import numpy as np

from klm.metrics import UNKNOWN_SHARE_WARNING, unknown_token_report


def test_unknown_token_report_warns_above_the_threshold():
    assert unknown_token_report([5, 6, 7], unk_token_id=None) == {}  # byte tokenizers have no <unk>
    readable = unknown_token_report(np.array([1, 5, 6, 7]), unk_token_id=1)
    assert readable == {"unknown_tokens": 1, "unknown_token_share": 0.25}
    at_threshold = unknown_token_report([1, 5], unk_token_id=1)
    assert UNKNOWN_SHARE_WARNING == 0.5 and "warnings" not in at_threshold
    unreadable = unknown_token_report(np.ones(10, "int32"), unk_token_id=1, what="greek.txt")
    assert unreadable["unknown_token_share"] == 1.0
    assert unreadable["warnings"] == [
        "100.0% of the tokens of greek.txt are <unk> (10 of 10): the tokenizer cannot read most of this text "
        "(another language or script, or not text), so the perplexity measures how well the model predicts "
        "<unk>, not the text."
    ]
    assert unknown_token_report([], unk_token_id=1) == {"unknown_tokens": 0, "unknown_token_share": 0.0}
