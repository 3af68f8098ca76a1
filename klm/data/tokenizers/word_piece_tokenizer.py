"""`WordPieceTokenizer`: keras-hub's WordPiece layer with klm's special tokens."""

import keras
import keras_hub

# Fixed ids of the special tokens, first in every WordPiece vocabulary.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")


@keras.saving.register_keras_serializable(package="klm")
class WordPieceTokenizer(keras_hub.tokenizers.WordPieceTokenizer):
    """A WordPiece tokenizer (BERT's algorithm) with fixed special-token ids.

    A `keras_hub.tokenizers.WordPieceTokenizer` that splits on whitespace and
    punctuation (and around CJK characters), keeps case and accents (klm's
    cleaning decides those, see `CleaningConfig`), and whose vocabulary
    starts with `[PAD]` 0, `[UNK]` 1, `[BOS]` 2 and `[EOS]` 3 (end of text).
    Train a vocabulary with `klm.data.train_tokenizer("wordpiece", ...)`,
    which calls `keras_hub.tokenizers.compute_word_piece_vocabulary`.

    It always runs the TF (tf-text) implementation, so eager calls return the
    same types as calls inside `tf.data`.

    Args:
        vocabulary: a list of WordPiece tokens starting with the special
            tokens, or a one-token-a-line file.
        sequence_length: int. If set, outputs are padded with `[PAD]` or
            truncated to this length.
        lowercase: bool. Lower-case inside the tokenizer. Defaults to `False`.
        **kwargs: passed to `keras_hub.tokenizers.WordPieceTokenizer`.

    Example:

    >>> vocab = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "the", "qu", "##ick", "."]
    >>> WordPieceTokenizer(vocab).tokenize(["the quick."]).to_list()
    [[4, 5, 6, 7]]
    """

    def __init__(self, vocabulary=None, sequence_length=None, lowercase=False, **kwargs):
        self._add_special_token(SPECIAL_TOKENS[0], "pad_token")
        self._add_special_token(SPECIAL_TOKENS[1], "unk_token")
        self._add_special_token(SPECIAL_TOKENS[2], "start_token")
        self._add_special_token(SPECIAL_TOKENS[3], "end_token")
        kwargs.setdefault("_allow_python_workflow", False)
        kwargs.pop("oov_token", None)
        super().__init__(
            vocabulary=vocabulary,
            sequence_length=sequence_length,
            lowercase=lowercase,
            oov_token=SPECIAL_TOKENS[1],
            **kwargs,
        )
