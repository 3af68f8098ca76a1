"""Issue 12, data side: what pretrain/finetune/evaluate read is checked, counted and named.

Binary files are refused in the shared reading path (prepare, `load_corpus`,
classification data); invalid UTF-8 is counted (or refused with
`strict_utf8`); `load_corpus` and `load_classification_data` take the
`cleaning=` settings the CLI flags `--strict` and `--scrub-privacy` map to;
errors about empty data name the role of the data.
"""

import gzip
import shutil

import pytest
from click.testing import CliRunner

from klm.data import CleaningConfig, load_classification_data, load_corpus, read_labelled_texts
from klm.errors import DataError

LINES = ["the cat sat on the mat .", "the dog ran to the park ."] * 20


def binary_file(path):
    shutil.copyfile(shutil.which("ls") or "/bin/ls", path)
    return path


def test_binary_text_is_refused_by_load_corpus(tmp_path):
    data = binary_file(tmp_path / "data.txt")
    with pytest.raises(DataError, match=r"Expected a text file.*data\.txt looks binary: a NUL byte"):
        load_corpus(str(data), verbose=False)
    packed = tmp_path / "data.txt.gz"
    with gzip.open(packed, "wb") as f:
        f.write(data.read_bytes())
    with pytest.raises(DataError, match=r"data\.txt\.gz looks binary"):
        load_corpus(str(packed), verbose=False)
    # Also as a validation file next to good training text.
    good = tmp_path / "good.txt"
    good.write_text("\n".join(LINES) + "\n")
    with pytest.raises(DataError, match=r"data\.txt looks binary"):
        load_corpus(str(good), valid=str(data), verbose=False)


def test_binary_without_nul_bytes_and_utf16_are_refused(tmp_path):
    noise = tmp_path / "noise.txt"
    noise.write_bytes(bytes(range(128, 256)) * 40)
    with pytest.raises(DataError, match=r"noise\.txt looks binary: \d+% of the bytes are not valid UTF-8"):
        load_corpus(str(noise), verbose=False)
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("\n".join(LINES).encode("utf-16"))
    with pytest.raises(DataError, match=r"utf16\.txt looks binary.*UTF-16"):
        load_corpus(str(utf16), verbose=False)


def test_binary_classification_data_is_refused(tmp_path):
    data = binary_file(tmp_path / "train.txt")
    with pytest.raises(DataError, match=r"train\.txt looks binary"):
        load_classification_data(data)
    # The path `klm evaluate` reads a classifier's data through.
    with pytest.raises(DataError, match=r"train\.txt looks binary"):
        read_labelled_texts(data)


def test_invalid_utf8_is_counted_and_reported_by_load_corpus(tmp_path, capsys):
    path = tmp_path / "latin1.txt"
    path.write_bytes("\n".join(LINES + ["caf\xe9 cr\xe8me br\xfbl\xe9e ."]).encode("latin-1"))
    corpus = load_corpus(str(path), verbose=False)  # the note is not progress: printed anyway
    assert corpus.cleaning_report["invalid_utf8_lines"] == 1
    assert corpus.cleaning_report["invalid_utf8_replaced"] == 4
    err = capsys.readouterr().err
    assert "note: replaced 4 invalid UTF-8 byte sequence(s) with U+FFFD on 1 line(s) of the training text" in err
    with pytest.raises(DataError, match=r"latin1\.txt, line 41 .*--strict"):
        load_corpus(str(path), cleaning={"strict_utf8": True}, verbose=False)
    with pytest.raises(DataError, match=r"latin1\.txt, line 41"):
        load_corpus(str(path), cleaning=CleaningConfig(strict_utf8=True), verbose=False)


def test_invalid_utf8_is_counted_and_strict_in_classification_data(tmp_path, capsys):
    path = tmp_path / "train.txt"
    path.write_bytes(b"1 a fine film\n0 a dull caf\xe9 film\n1 good\n")
    data = load_classification_data(path)
    assert data.train["texts"][1] == "a dull caf\ufffd film"
    assert data.cleaning_report["invalid_utf8_lines"] == 1 and data.cleaning_report["invalid_utf8_replaced"] == 1
    assert "note: replaced 1 invalid UTF-8" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"train\.txt, line 2 .*column 13"):
        load_classification_data(path, cleaning={"strict_utf8": True})
    with pytest.raises(DataError, match=r"train\.txt, line 2"):
        load_classification_data(path, cleaning=CleaningConfig(strict_utf8=True))


def test_scrub_privacy_in_load_corpus_and_classification_data(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\n".join(LINES + ["mail jane@example.com or call 555 666 7777 ."]) + "\n")
    corpus = load_corpus(str(path), cleaning={"scrub_privacy": True}, verbose=False)
    assert corpus.cleaning_report["privacy_email"] == 1 and corpus.cleaning_report["privacy_phone"] == 1
    vocabulary = corpus.tokenizer.get_vocabulary()
    assert "<email>" in vocabulary and "jane" not in vocabulary and "7777" not in vocabulary
    labelled = tmp_path / "train.txt"
    labelled.write_text("1 mail jane@example.com now\n0 key sk-abcdefghijklmnop1234 leaked\n")
    data = load_classification_data(labelled, cleaning={"scrub_privacy": True, "strict_utf8": True})
    assert data.train["texts"] == ["mail <email> now", "key <secret> leaked"]
    assert data.cleaning_report["privacy_email"] == 1 and data.cleaning_report["privacy_secret"] == 1
    # A dict turns on only the steps it names: the text is otherwise as read.
    labelled.write_text("1 Two  spaces\n")
    assert load_classification_data(labelled, cleaning={"scrub_privacy": True}).train["texts"] == ["Two  spaces"]


def test_empty_data_error_names_its_role(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="Expected text in the training sources"):
        load_corpus(str(empty), verbose=False)
    with pytest.raises(DataError, match="Expected text in the evaluation sources") as info:
        load_corpus(str(empty), role="evaluation", verbose=False)
    assert "training" not in str(info.value)


def test_pretrain_refuses_binary_data(tmp_path):
    from klm.cli.main import main

    data = binary_file(tmp_path / "data.txt")
    result = CliRunner().invoke(
        main,
        ["pretrain", "--data", str(data), "--run-dir", str(tmp_path / "run"), "--preset", "tiny", "--max-steps", "1"],
    )
    assert result.exit_code == 2, result.output
    assert "data.txt looks binary" in result.output
