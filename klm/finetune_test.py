"""Resuming a classifier run keeps its classes (issue 22, item 20)."""

import pytest

from klm import data as data_lib
from klm.config import FinetuneConfig
from klm.errors import RunDirError
from klm.finetune import _load_labelled


def write(path, rows):
    path.write_text("".join(f"{label} {text}\n" for label, text in rows))
    return str(path)


def test_resuming_with_other_label_names_names_both_label_sets(tmp_path):
    train = write(tmp_path / "t.txt", [("pos", "good film"), ("neg", "bad film")])
    run_labels = data_lib.LabelVocabulary(["0", "1"])
    config = FinetuneConfig(train=train, run_dir=str(tmp_path / "run"))
    with pytest.raises(RunDirError, match=r"labels \['0', '1'\].*--train has single-label labels \['neg', 'pos'\]"):
        _load_labelled(config, data_lib, run_labels, tmp_path / "run")


def test_resuming_with_some_of_the_runs_labels_encodes_with_the_runs_ids(tmp_path):
    train = write(tmp_path / "t.txt", [("b", "x y"), ("b", "y z")])
    run_labels = data_lib.LabelVocabulary(["a", "b", "c"])
    config = FinetuneConfig(train=train, run_dir=str(tmp_path / "run"))
    labelled = _load_labelled(config, data_lib, run_labels, tmp_path / "run")
    assert labelled.label_vocabulary == run_labels
    assert list(labelled.train["labels"]) == [1, 1]
