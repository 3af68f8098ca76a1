"""`SentencePieceTokenizer`: keras-hub's SentencePiece layer with named special tokens."""

import keras
import keras_hub

# The ids `keras_hub.tokenizers.compute_sentence_piece_proto` gives them.
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")


@keras.saving.register_keras_serializable(package="klm")
class SentencePieceTokenizer(keras_hub.tokenizers.SentencePieceTokenizer):
    """A SentencePiece tokenizer (unigram or BPE) with named special tokens.

    A `keras_hub.tokenizers.SentencePieceTokenizer` whose proto was trained by
    `keras_hub.tokenizers.compute_sentence_piece_proto` (see
    `klm.data.train_tokenizer("sentencepiece", ...)`), which fixes the special
    ids: `<pad>` 0, `<unk>` 1, `<s>` 2 and `</s>` 3 (end of text). This class
    exposes them as `pad_token_id`, `unk_token_id`, `start_token_id` and
    `end_token_id`. SentencePiece applies NFKC itself and keeps whitespace as
    `▁`, so `detokenize` restores the text.

    It always runs the TF (tf-text) implementation, so eager calls return the
    same types as calls inside `tf.data`.

    Args:
        proto: the serialized model (`bytes`) or the path of a `.spm` file.
        sequence_length: int. If set, outputs are padded with id 0 or
            truncated to this length.
        **kwargs: passed to `keras_hub.tokenizers.SentencePieceTokenizer`.

    Example:

    ```python
    tokenizer = klm.data.train_tokenizer("sentencepiece", texts, vocab_size=500)
    tokenizer.tokenize(["a sentence"])
    ```
    """

    def __init__(self, proto=None, sequence_length=None, **kwargs):
        self._add_special_token(SPECIAL_TOKENS[0], "pad_token")
        self._add_special_token(SPECIAL_TOKENS[1], "unk_token")
        self._add_special_token(SPECIAL_TOKENS[2], "start_token")
        self._add_special_token(SPECIAL_TOKENS[3], "end_token")
        kwargs.setdefault("_allow_python_workflow", False)
        super().__init__(proto=proto, sequence_length=sequence_length, **kwargs)
