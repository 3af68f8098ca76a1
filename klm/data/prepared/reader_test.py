import json
import os
import shutil

import numpy as np
import pytest

from klm.data.prepared.config import PrepareConfig
from klm.data.prepared.manifest import prepared_folder_problem
from klm.data.prepared.reader import load_prepared
from klm.data.prepared.writer import prepare
from klm.errors import DataError


def make_prepared(tmp_path, name="out"):
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while the dog ran".split()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words, size=6)) for _ in range(50)) + "\n")
    prepare(PrepareConfig(sources=[str(corpus)], out=str(tmp_path / name), verbose=False))
    return tmp_path / name


def edit_manifest(folder, edit):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("where", ["parent", "absolute", "dotdot-inside"])
def test_shard_paths_that_leave_the_folder_are_refused(tmp_path, where):
    out = make_prepared(tmp_path)
    outside = tmp_path / "elsewhere" / "train-00000.bin"
    outside.parent.mkdir()
    shutil.copyfile(out / "train-00000.bin", outside)  # same size and checksum
    target = {
        "parent": "../elsewhere/train-00000.bin",
        "absolute": str(outside),
        "dotdot-inside": "tokenizer/../train-00000.bin",
    }[where]

    def edit(manifest):
        manifest["splits"]["train"]["shards"][0]["file"] = target

    edit_manifest(out, edit)
    with pytest.raises(DataError) as info:
        load_prepared(out)
    message = str(info.value)
    assert "manifest.json" in message and repr(target) in message and "inside the prepared folder" in message


def test_tokenizer_path_that_leaves_the_folder_is_refused(tmp_path):
    out = make_prepared(tmp_path)
    shutil.copytree(out / "tokenizer", tmp_path / "tok")

    def edit(manifest):
        manifest["tokenizer"]["path"] = "../tok"

    edit_manifest(out, edit)
    with pytest.raises(DataError, match=r"manifest.json.*'\.\./tok'"):
        load_prepared(out)


def test_symlinked_shard_that_points_outside_is_refused(tmp_path):
    out = make_prepared(tmp_path)
    outside = tmp_path / "secret.bin"
    os.replace(out / "train-00000.bin", outside)
    os.symlink(outside, out / "train-00000.bin")
    with pytest.raises(DataError, match="train-00000.bin"):
        load_prepared(out)


def test_prepared_folder_problem(tmp_path):
    out = make_prepared(tmp_path)
    assert prepared_folder_problem(out) is None
    (out / "notes.txt").write_text("mine")
    assert "did not write: notes.txt" in prepared_folder_problem(out)
    (out / "notes.txt").unlink()
    (out / "extra").mkdir()
    assert "extra" in prepared_folder_problem(out)
    (out / "extra").rmdir()
    (out / "manifest.json").write_text("{not json")
    assert "unreadable" in prepared_folder_problem(out)
    (out / "manifest.json").unlink()
    assert "no manifest.json" in prepared_folder_problem(out)
