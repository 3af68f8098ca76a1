"""The SavedModel itself: a `keras.export.ExportArchive` holding the model, the tokenizer and the signatures.

`build_export_archive(run)` tracks the Keras model and the tokenizer's TF
resources (lookup tables, tf-text tokenizers) and adds one endpoint per
signature: `serving_default` for classifiers; `serving_default`, `score`,
`generate` and `generate_top_k` for language models (see `klm.export`).
Runs under the TensorFlow backend only (the build worker's process).
"""

from klm.export.config import ExportError
from klm.export.generation import generate_function
from klm.export.signatures import classify_function, score_function


def build_export_archive(run):
    """A `keras.export.ExportArchive` with the serving signatures of a run.

    Needs the TensorFlow backend (`export_run` runs it in a TensorFlow
    subprocess for runs trained on any backend).

    Args:
        run: a `klm.runs.Run` (from `klm.pretrained.load_run`).
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            "build_export_archive needs the TensorFlow backend (export_run runs it in a TensorFlow "
            f"subprocess). Received: backend={keras.backend.backend()!r}"
        )
    archive = keras.export.ExportArchive()
    archive.track(run.model)
    for resource in tokenizer_resources(run.tokenizer):
        archive.track(resource)
    texts_spec = [tf.TensorSpec([None], tf.string, name="texts")]
    if run.mode.has_labels:
        archive.add_endpoint("serving_default", classify_function(run), input_signature=texts_spec)
        return archive
    score = score_function(run)
    archive.add_endpoint("serving_default", score, input_signature=texts_spec)
    archive.add_endpoint("score", score, input_signature=texts_spec)
    prompts = tf.TensorSpec([None], tf.string, name="prompts")
    max_new = tf.TensorSpec([], tf.int32, name="max_new_tokens")
    archive.add_endpoint("generate", generate_function(run, sampling=False), input_signature=[prompts, max_new])
    archive.add_endpoint(
        "generate_top_k",
        generate_function(run, sampling=True),
        input_signature=[
            prompts,
            max_new,
            tf.TensorSpec([], tf.int32, name="top_k"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int32, name="seed"),
        ],
    )
    return archive


def tokenizer_resources(tokenizer):
    """TF resources a tokenizer layer holds (lookup tables, tf-text tokenizers).

    `ExportArchive` tracks the model's variables itself, but such resources
    must be tracked explicitly to be saved with the graph.
    """
    import keras
    import tensorflow as tf

    return [
        value
        for value in vars(tokenizer).values()
        if isinstance(value, tf.__internal__.tracking.Trackable)
        and not isinstance(value, (keras.layers.Layer, keras.Variable, tf.Variable))
    ]
