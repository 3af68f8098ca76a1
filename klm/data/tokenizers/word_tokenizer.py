"""`WordTokenizer`: torchtext's `basic_english` rules as an in-graph layer."""

import collections
import os
import re

import keras
import keras_hub
import tensorflow as tf
from keras_hub.src.utils.tensor_utils import convert_to_ragged_batch, preprocessing_function

from klm.errors import DataError

VOCABULARY_FILE = "vocabulary.txt"
# Fixed ids of the special tokens, first in every word vocabulary.
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
PAD_TOKEN, UNK_TOKEN, START_TOKEN, END_TOKEN = SPECIAL_TOKENS

# torchtext's `basic_english` rules, in order (torchtext/data/utils.py). The
# pure-Python reference below applies them literally.
BASIC_ENGLISH_RULES = (
    (r"\'", " '  "),
    (r"\"", ""),
    (r"\.", " . "),
    (r"<br \/>", " "),
    (r",", " , "),
    (r"\(", " ( "),
    (r"\)", " ) "),
    (r"\!", " ! "),
    (r"\?", " "),
    (r"\;", " "),
    (r"\:", " "),
    (r"\s+", " "),
)
_COMPILED_RULES = tuple((re.compile(pattern), replacement) for pattern, replacement in BASIC_ENGLISH_RULES)

# Python's `\s` (and `str.split()`) matches every character for which
# `str.isspace()` is true; RE2's `\s` only matches ASCII whitespace. This
# class lists Python's set so that the in-graph version splits identically.
_PYTHON_WHITESPACE = (
    r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)


def basic_english_python(line):
    """torchtext's `basic_english` tokenizer in plain Python (the reference).

    Lower-cases `line`, applies `BASIC_ENGLISH_RULES` in order with `re.sub`
    and splits on whitespace, exactly like
    `torchtext.data.utils.get_tokenizer("basic_english")`.

    Example:

    >>> basic_english_python('He said: "Don\\'t!" (twice).')
    ['he', 'said', 'don', "'", 't', '!', '(', 'twice', ')', '.']
    """
    line = line.lower()
    for pattern, replacement in _COMPILED_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def basic_english_split(inputs):
    """Splits a string tensor into `basic_english` words, in TF ops.

    The twelve rules are merged into four regex passes with the same
    result: the rules that surround a character with spaces (`' . , ( ) !`)
    neither create nor destroy matches of each other, and the rules that
    replace `? ; :` and whitespace runs with one space only change how much
    whitespace separates words, which the final split ignores. The `"`
    deletion must precede the `<br />` rule (deleting a quote can form
    `<br />`), as in torchtext.

    `tf.strings.lower` follows Python's `str.lower()` except for about 40
    characters added in Unicode 14 and later, which TF's older tables leave
    unchanged.

    Args:
        inputs: a string `tf.Tensor` of any shape.

    Returns:
        A `tf.RaggedTensor` of words with one more (ragged) dimension.
    """
    text = tf.strings.lower(inputs, encoding="utf-8")
    text = tf.strings.regex_replace(text, '"', "")
    text = tf.strings.regex_replace(text, "<br />", " ")
    text = tf.strings.regex_replace(text, r"(['.,()!])", r" \1 ")
    text = tf.strings.regex_replace(text, "[?;:" + _PYTHON_WHITESPACE + "]+", " ")
    # After the pass above the only whitespace left is " ", so splitting on
    # ASCII whitespace equals Python's `str.split()`.
    return tf.strings.split(text)


def build_word_vocabulary(word_counts, min_freq=1, max_vocab=None):
    """Builds a word vocabulary from counts, as torchtext does.

    Words are ordered by descending count, ties broken by the word itself in
    code-point order (torchtext's `build_vocab_from_iterator`), after the four
    special tokens `<pad> <unk> <s> </s>`. Words seen fewer than `min_freq`
    times are left out (they become `<unk>`), and so are words spelled like a
    special token (WikiText's `<unk>` maps to the special `<unk>`).

    Args:
        word_counts: a mapping from word (`str` or UTF-8 `bytes`) to count.
        min_freq: int. The minimum count of a kept word.
        max_vocab: int or `None`. The maximum vocabulary size, special tokens
            included (torchtext's `max_tokens`).

    Returns:
        A list of `str`, the special tokens first.
    """
    counts = {}
    for word, count in word_counts.items():
        if isinstance(word, bytes):
            word = word.decode("utf-8")
        counts[word] = counts.get(word, 0) + count
    words = sorted(
        (item for item in counts.items() if item[1] >= min_freq and item[0] not in SPECIAL_TOKENS),
        key=lambda item: (-item[1], item[0]),
    )
    vocabulary = list(SPECIAL_TOKENS) + [word for word, _ in words]
    if max_vocab is not None:
        vocabulary = vocabulary[:max_vocab]
    return vocabulary


@keras.saving.register_keras_serializable(package="klm")
class WordTokenizer(keras_hub.tokenizers.Tokenizer):
    """A word tokenizer with torchtext's `basic_english` rules, in graph.

    Lower-cases the text, separates `' . , ( ) !` from words, deletes `"`,
    turns `<br />`, `? ; :` and whitespace into spaces, and splits on spaces
    (see `basic_english_python`), then maps each word to its id. It runs in
    TF ops only, so it works inside `tf.data` and inside an exported TF
    graph, whatever the Keras backend.

    Special tokens have fixed ids: `<pad>` 0, `<unk>` 1, `<s>` 2 and
    `</s>` 3 (end of text). Words not in the vocabulary map to `<unk>`.
    `detokenize` joins words with single spaces (and drops `<pad>`), so it
    inverts `tokenize` only up to the rules above.

    Args:
        vocabulary: a list of words starting with the four special tokens, or
            the path of a file with one word per line. Build one with
            `build_word_vocabulary` or `klm.data.train_tokenizer("word", ...)`.
        sequence_length: int. If set, outputs are padded with `<pad>` or
            truncated to this length, and dense.
        dtype: `"int32"` (default) for ids, or `"string"` for words.

    Example:

    >>> tokenizer = WordTokenizer(["<pad>", "<unk>", "<s>", "</s>", "the", "cat", "."])
    >>> tokenizer.tokenize(["The cat sat."]).to_list()
    [[4, 5, 1, 6]]
    >>> tokenizer.detokenize([[4, 5, 6]])
    <tf.Tensor: ... numpy=array([b'the cat .'], dtype=object)>
    """

    def __init__(self, vocabulary=None, sequence_length=None, dtype="int32", **kwargs):
        if dtype not in ("int32", "int64", "string"):
            raise ValueError(f"Expected dtype to be 'int32', 'int64' or 'string'. Received: dtype={dtype!r}")
        self._add_special_token(PAD_TOKEN, "pad_token")
        self._add_special_token(UNK_TOKEN, "unk_token")
        self._add_special_token(START_TOKEN, "start_token")
        self._add_special_token(END_TOKEN, "end_token")
        kwargs.setdefault("_allow_python_workflow", False)
        super().__init__(dtype=dtype, **kwargs)
        self.sequence_length = sequence_length
        self.file_assets = [VOCABULARY_FILE]
        self.set_vocabulary(vocabulary)

    def set_vocabulary(self, vocabulary):
        """Sets the vocabulary from a list of words or a one-word-a-line file."""
        if vocabulary is None:
            self.vocabulary = None
            self._lookup_table = None
            self._id_to_word = None
            return
        if isinstance(vocabulary, (str, os.PathLike)):
            with open(vocabulary, encoding="utf-8") as f:
                # Split on "\n" only: words never contain whitespace, but
                # `splitlines()` would also split on U+2028 and friends.
                vocabulary = f.read().split("\n")
            if vocabulary and vocabulary[-1] == "":
                vocabulary.pop()
        vocabulary = [w.decode("utf-8") if isinstance(w, bytes) else str(w) for w in vocabulary]
        if tuple(vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise DataError(
                f"Expected a word vocabulary starting with {list(SPECIAL_TOKENS)}. "
                f"Received: vocabulary starting with {vocabulary[:4]}"
            )
        if len(set(vocabulary)) != len(vocabulary):
            duplicates = [w for w, c in collections.Counter(vocabulary).items() if c > 1][:5]
            raise DataError(f"Expected distinct words in the vocabulary. Received: duplicates {duplicates}")
        self.vocabulary = vocabulary
        self._token_to_id_map = {word: i for i, word in enumerate(vocabulary)}
        # Tables are built eagerly, outside any tf.data pipeline, so that the
        # pipeline and exported graphs capture them as resources.
        with tf.init_scope():
            self._lookup_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(vocabulary, dtype=tf.string),
                    tf.range(len(vocabulary), dtype=tf.int64),
                ),
                default_value=self._token_to_id_map[UNK_TOKEN],
            )
            self._id_to_word = tf.constant(vocabulary, dtype=tf.string)
        self._update_special_token_ids()

    def get_vocabulary(self):
        """The vocabulary as a list of words (special tokens first)."""
        self._check_vocabulary()
        return list(self.vocabulary)

    def vocabulary_size(self):
        """The number of ids, special tokens included."""
        self._check_vocabulary()
        return len(self.vocabulary)

    def id_to_token(self, id):
        """The word of an id."""
        self._check_vocabulary()
        if id < 0 or id >= len(self.vocabulary):
            raise ValueError(f"Expected an id in [0, {len(self.vocabulary) - 1}]. Received: id={id}")
        return self.vocabulary[id]

    def token_to_id(self, token):
        """The id of a word (the `<unk>` id for unknown words)."""
        self._check_vocabulary()
        return self._token_to_id_map.get(token, self._token_to_id_map[UNK_TOKEN])

    def _check_vocabulary(self):
        if getattr(self, "vocabulary", None) is None:
            raise ValueError("No vocabulary has been set for WordTokenizer. Pass `vocabulary=` when creating it.")

    def save_assets(self, dir_path):
        with open(os.path.join(dir_path, VOCABULARY_FILE), "w", encoding="utf-8") as f:
            f.write("".join(word + "\n" for word in self.vocabulary))

    def load_assets(self, dir_path):
        self.set_vocabulary(os.path.join(dir_path, VOCABULARY_FILE))

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary": None, "sequence_length": self.sequence_length})
        return config

    @preprocessing_function
    def tokenize(self, inputs):
        """Tokenizes a string or a batch (tensor, list) of strings.

        Returns:
            For a batch, a `tf.RaggedTensor` of ids (or a dense tensor when
            `sequence_length` is set); for a scalar string, a 1-D tensor.
        """
        self._check_vocabulary()
        if not isinstance(inputs, (tf.Tensor, tf.RaggedTensor)):
            inputs = tf.convert_to_tensor(inputs)
        scalar_input = inputs.shape.rank == 0
        if scalar_input:
            inputs = tf.expand_dims(inputs, 0)
        words = basic_english_split(inputs)
        if self.compute_dtype == "string":
            tokens = words
        else:
            tokens = tf.ragged.map_flat_values(self._lookup_table.lookup, words)
            tokens = tf.cast(tokens, self.compute_dtype)
        if self.sequence_length:
            output_shape = tokens.shape.as_list()
            output_shape[-1] = self.sequence_length
            default = "" if self.compute_dtype == "string" else self.pad_token_id
            tokens = tokens.to_tensor(default_value=default, shape=output_shape)
        if scalar_input:
            tokens = tokens[0]
        return tokens

    @preprocessing_function
    def detokenize(self, inputs):
        """Joins the words of ids with single spaces, dropping `<pad>`."""
        self._check_vocabulary()
        inputs, unbatched, _ = convert_to_ragged_batch(inputs)
        inputs = tf.cast(inputs, tf.int64)
        inputs = tf.ragged.boolean_mask(inputs, tf.not_equal(inputs, self.pad_token_id))
        words = tf.ragged.map_flat_values(tf.gather, self._id_to_word, inputs)
        outputs = tf.strings.reduce_join(words, separator=" ", axis=-1)
        if unbatched:
            outputs = tf.squeeze(outputs, 0)
        return outputs

    @preprocessing_function
    def call(self, inputs, *args, training=None, **kwargs):
        return self.tokenize(inputs, *args, **kwargs)

    def compute_output_spec(self, input_spec):
        return keras.KerasTensor(input_spec.shape + (self.sequence_length,), dtype=self.compute_dtype)
