import os

import pytest

from klm.errors import ConfigError
from klm.export.publish import check_new_output, file_sizes, require_runtime, staged_output


def test_existing_output_is_refused_and_left_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is left as it is"):
        check_new_output(out)
    with pytest.raises(ConfigError, match="Received: OUT="):
        with staged_output(out):
            raise AssertionError("not reached")
    assert (out / "mine.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError):
        check_new_output(a_file)
    assert a_file.read_text() == "x"


def test_staged_output_renames_on_success_and_removes_on_failure(tmp_path):
    with staged_output(tmp_path / "ok") as temp:
        assert os.path.dirname(temp) == str(tmp_path)
        (tmp_path / os.path.basename(temp) / "model.bin").write_bytes(b"1234")
    assert file_sizes(tmp_path / "ok") == {"model.bin": 4}
    with pytest.raises(RuntimeError):
        with staged_output(tmp_path / "nested" / "bad") as temp:
            open(os.path.join(temp, "half.bin"), "wb").close()
            raise RuntimeError("the check failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]  # no temp folder, no parent left behind
    (tmp_path / "empty").mkdir()
    with staged_output(tmp_path / "empty") as temp:
        open(os.path.join(temp, "a"), "w").close()
    assert os.listdir(tmp_path / "empty") == ["a"]


def test_missing_runtime_names_the_extra():
    with pytest.raises(ConfigError, match=r"pip install klm\[gguf\]"):
        require_runtime("klm_no_such_module_xyz", "gguf", "Writing GGUF")
    require_runtime("json", "gguf", "anything")
