"""LiteRT export of a tiny klm LM (TensorFlow backend), checked in the LiteRT interpreter alone."""

import keras
import pytest

from klm.errors import ConfigError
from klm.export import testing

pytest.importorskip("ai_edge_litert")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the LiteRT export converts a TensorFlow graph")
@pytest.mark.heavy
def test_litert_matches_keras(tmp_path):
    from klm.export.litert_format import export_litert
    from klm.pretrained import load_checkpoint

    testing.make_run(tmp_path / "lm")
    result = export_litert(load_checkpoint(str(tmp_path / "lm")), tmp_path / "out")
    assert result["verified"] and result["max_abs_diff"] <= 1e-4 and result["input_shape"] == [1, 16]
    print(f"LiteRT: max abs diff {result['max_abs_diff']:.2e}, {result['files']}")


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="refused on the other backends only")
def test_other_backends_are_refused(tmp_path):
    from klm.export.litert_format import export_litert
    from klm.pretrained import load_checkpoint

    testing.make_run(tmp_path / "lm")
    with pytest.raises(ConfigError, match="--backend tensorflow"):
        export_litert(load_checkpoint(str(tmp_path / "lm")), tmp_path / "out")
