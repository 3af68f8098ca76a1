import math

import numpy as np
import pytest

from klm.errors import ConfigError, DataError
from klm.pretrained.perplexity import hf_convention_loss, windows


def test_windows_are_contiguous_and_the_last_is_padded():
    ids, mask = windows(np.arange(1, 11), 4)
    assert ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]]
    assert mask.sum(axis=1).tolist() == [4, 4, 2]


def _reference_loss(logits, ids, seq_len):
    """NumPy: mean over windows' positions t >= 1 of -log softmax(logits[t-1])[ids[t]]."""
    total, count = 0.0, 0
    for start in range(0, len(ids), seq_len):
        window = ids[start : start + seq_len]
        out = logits(window[None])[0]
        for t in range(1, len(window)):
            row = out[t - 1].astype("float64")
            total += np.log(np.exp(row - row.max()).sum()) + row.max() - row[window[t]]
            count += 1
    return total / count, count


def test_hf_convention_loss_matches_numpy_on_a_klm_model():
    import keras

    from klm.models import KlmBackbone, KlmCausalLM
    from klm.testing import tiny_backbone_config

    lm = KlmCausalLM(KlmBackbone(**tiny_backbone_config()))
    ids = np.random.default_rng(0).integers(1, 64, size=23).astype("int32")

    def logits(batch):
        return keras.ops.convert_to_numpy(lm({"token_ids": batch, "padding_mask": np.ones_like(batch)}))

    loss, count = hf_convention_loss(lm, ids, seq_len=8, batch_size=2)
    reference, reference_count = _reference_loss(logits, ids, 8)
    assert count == reference_count == 7 + 7 + 6
    assert loss == pytest.approx(reference, rel=1e-5)
    assert math.isfinite(loss)


def test_errors():
    with pytest.raises(ConfigError, match="seq-len"):
        hf_convention_loss(None, np.arange(10), seq_len=1)
    with pytest.raises(DataError, match="at least 2 tokens"):
        hf_convention_loss(None, np.arange(1), seq_len=4)
