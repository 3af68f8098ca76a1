import keras
import numpy as np
import pytest

from klm.models.klm_backbone import KlmBackbone
from klm.models.klm_classifier import KlmClassifier
from klm.testing import tiny_backbone_config, token_batch


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_pooling_ignores_padding_content(pooling):
    classifier = KlmClassifier(KlmBackbone(**tiny_backbone_config()), num_classes=3, pooling=pooling, dropout=0.0)
    x = token_batch(padding=[3, 0])
    base = keras.ops.convert_to_numpy(classifier(x))
    assert base.shape == (2, 3)
    changed = {k: v.copy() for k, v in x.items()}
    changed["token_ids"][0, -3:] = 17  # garbage in the padded positions
    np.testing.assert_allclose(keras.ops.convert_to_numpy(classifier(changed)), base, atol=1e-5)


@pytest.mark.parametrize("multi_label", [False, True])
def test_fit_and_save(tmp_path, multi_label):
    keras.utils.set_random_seed(1)
    classifier = KlmClassifier(
        KlmBackbone(**tiny_backbone_config()), num_classes=4, multi_label=multi_label, dropout=0.0
    )
    classifier.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = token_batch(batch_size=8, seq_len=6, seed=3)
    if multi_label:
        y = (np.random.default_rng(0).random((8, 4)) > 0.5).astype("float32")
    else:
        y = np.arange(8) % 4
    history = classifier.fit(x, y, epochs=15, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.multi_label == multi_label and loaded.num_classes == 4
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(classifier(x)), atol=1e-6
    )


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        KlmClassifier(KlmBackbone(**tiny_backbone_config()), num_classes=1)
