"""`ByteTokenizer`: UTF-8 bytes as ids, plus padding and end-of-text ids."""

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import convert_to_ragged_batch, preprocessing_function

NUM_BYTES = 256
PAD_TOKEN = "<pad>"
END_TOKEN = "</s>"


@keras.saving.register_keras_serializable(package="klm")
class ByteTokenizer(keras_hub.tokenizers.ByteTokenizer):
    """Tokenizes text into its UTF-8 bytes; needs no training.

    A `keras_hub.tokenizers.ByteTokenizer` (ids 0-255 are the byte values)
    with two more ids so that it fits the language-model pipeline: `<pad>`
    256 and `</s>` 257 (end of text), for a vocabulary size of 258. There is
    no unknown token (`unk_token_id` is `None`): every text has bytes.
    `detokenize` drops the special ids and decodes the bytes as UTF-8,
    replacing invalid sequences.

    It always runs the TF implementation, so eager calls return the same
    types as calls inside `tf.data`.

    Args:
        **kwargs: passed to `keras_hub.tokenizers.ByteTokenizer`
            (`lowercase`, `normalization_form`, ...); both default to off,
            since klm's cleaning does that.

    Example:

    >>> ByteTokenizer().tokenize(["hi"]).to_list()
    [[104, 105]]
    """

    def __init__(self, lowercase=False, sequence_length=None, **kwargs):
        kwargs.setdefault("_allow_python_workflow", False)
        super().__init__(lowercase=lowercase, sequence_length=None, **kwargs)
        if sequence_length is not None:
            raise ValueError(
                "klm's ByteTokenizer pads in `classification_dataset`, not in the tokenizer. "
                f"Expected sequence_length=None. Received: sequence_length={sequence_length}"
            )
        self.pad_token = PAD_TOKEN
        self.end_token = END_TOKEN
        self.unk_token = None
        self.start_token = None
        self.pad_token_id = NUM_BYTES
        self.end_token_id = NUM_BYTES + 1
        self.unk_token_id = None
        self.start_token_id = None

    def vocabulary_size(self):
        """258: the 256 byte values, `<pad>` and `</s>`."""
        return NUM_BYTES + 2

    def get_vocabulary(self):
        """The 256 bytes as one-character strings (Latin-1), then the specials."""
        return [bytes([i]).decode("latin-1") for i in range(NUM_BYTES)] + [PAD_TOKEN, END_TOKEN]

    def id_to_token(self, id):
        if id == self.pad_token_id:
            return PAD_TOKEN
        if id == self.end_token_id:
            return END_TOKEN
        return super().id_to_token(id)

    def token_to_id(self, token):
        if token == PAD_TOKEN:
            return self.pad_token_id
        if token == END_TOKEN:
            return self.end_token_id
        return super().token_to_id(token)

    @property
    def special_tokens(self):
        return [PAD_TOKEN, END_TOKEN]

    @property
    def special_token_ids(self):
        return [self.pad_token_id, self.end_token_id]

    @preprocessing_function
    def detokenize(self, inputs):
        """Decodes ids to text, dropping `<pad>` and `</s>`."""
        inputs, unbatched, _ = convert_to_ragged_batch(inputs)
        inputs = tf.cast(inputs, tf.int32)
        inputs = tf.ragged.boolean_mask(inputs, inputs < NUM_BYTES)
        byte_strings = tf.constant([bytes([i]) for i in np.arange(NUM_BYTES)])
        outputs = tf.strings.reduce_join(tf.ragged.map_flat_values(tf.gather, byte_strings, inputs), axis=-1)
        outputs = tf.strings.unicode_transcode(outputs, "UTF-8", "UTF-8", errors="replace")
        if unbatched:
            outputs = tf.squeeze(outputs, 0)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.pop("sequence_length", None)
        return config
