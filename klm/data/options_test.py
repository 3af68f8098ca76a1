import numpy as np

from klm.data.classification.batches import classification_dataset
from klm.data.lm.batches import lm_dataset
from klm.data.lm.model_inputs import lm_model_inputs
from klm.data.options import without_autotune
from klm.data.tokenizers.byte_tokenizer import ByteTokenizer
from klm.sft.batching import to_dataset


def _autotune(dataset):
    return dataset.options().autotune.enabled


def test_without_autotune_turns_autotuning_off_and_keeps_the_data():
    import tensorflow as tf

    dataset = tf.data.Dataset.range(10).map(lambda x: x * 2, num_parallel_calls=tf.data.AUTOTUNE)
    tuned = without_autotune(dataset.prefetch(tf.data.AUTOTUNE))
    assert _autotune(tuned) is False
    assert list(tuned.as_numpy_iterator()) == list(range(0, 20, 2))


def test_klm_training_pipelines_run_without_autotune():
    tokens = np.arange(200, dtype=np.int32)
    for mode in ("shuffled", "contiguous"):
        # Options carry through the maps that follow (lm_model_inputs).
        assert _autotune(lm_model_inputs(lm_dataset(tokens, 4, 2, mode=mode))) is False
    batches = [({"token_ids": np.ones((2, 3), np.int32)}, np.ones((2, 3), np.int32), np.ones((2, 3), np.float32))]
    assert _autotune(to_dataset(batches)) is False
    labels = np.array([0, 1])
    assert _autotune(classification_dataset(["ab", "c"], labels, ByteTokenizer(), seq_len=3, batch_size=2)) is False
