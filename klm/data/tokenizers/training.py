"""`train_tokenizer`: builds a klm tokenizer from training text."""

import collections
import re
import sys

import keras_hub
import tensorflow as tf

from klm.config import SENTENCEPIECE_MODEL_TYPES
from klm.data.tokenizers.byte_tokenizer import ByteTokenizer
from klm.data.tokenizers.sentence_piece_tokenizer import SPECIAL_TOKENS as SENTENCEPIECE_SPECIAL_TOKENS
from klm.data.tokenizers.sentence_piece_tokenizer import SentencePieceTokenizer
from klm.data.tokenizers.word_piece_tokenizer import SPECIAL_TOKENS as WORD_PIECE_SPECIAL_TOKENS
from klm.data.tokenizers.word_piece_tokenizer import WordPieceTokenizer
from klm.data.tokenizers.word_tokenizer import SPECIAL_TOKENS as WORD_SPECIAL_TOKENS
from klm.data.tokenizers.word_tokenizer import WordTokenizer, basic_english_split, build_word_vocabulary
from klm.errors import ConfigError, DataError

TOKENIZER_KINDS = ("word", "wordpiece", "sentencepiece", "byte")
DEFAULT_SUBWORD_VOCABULARY_SIZE = 8000
# compute_word_piece_vocabulary searches a count threshold whose vocabulary
# is within 5% of the requested size (tf-text's `slack_ratio`), so WordPiece
# sizes are approximate; below that the corpus cannot fill the request.
WORDPIECE_SLACK = 0.05
# Subword tokenizers learn from a bounded, uniform sample of the training
# documents, so that their memory and time stay flat as the corpus grows:
# SentencePiece holds its sentences in memory (~27 bytes of RSS per byte of
# text, measured: a 48 MB sample peaked at 2.0 GB for the whole `klm
# prepare`) and its training time grows with them. 32 MB of text is ~75,000
# WikiText paragraphs, plenty for vocabularies of tens of thousands.
TOKENIZER_SAMPLE_BYTES = 32 * 2**20
# SentencePiece skips longer sentences (its `max_sentence_length`); the
# sample leaves them out rather than spend its budget on them.
SENTENCEPIECE_MAX_SENTENCE_BYTES = 4192


class DocumentSample:
    """A uniform sample of non-empty documents whose text fits in `max_bytes`.

    Every document gets a random key (`random.Random(seed)`); the sample
    keeps the documents with the smallest keys that fit in the byte budget
    (a max-heap evicts the largest key while the budget is exceeded), so
    memory is bounded by `max_bytes` however long the stream. A corpus that
    fits whole is kept whole, in its own order; the sample is returned in
    stream order either way.

    Attributes:
        documents: the sampled documents (bytes), in stream order.
        seen: non-empty documents read; `seen_bytes`: their bytes.
    """

    def __init__(self, batches, max_bytes=None, max_document_bytes=None, seed=0, progress=None):
        import heapq
        import random

        max_bytes = TOKENIZER_SAMPLE_BYTES if max_bytes is None else max_bytes
        rng = random.Random(seed)
        heap = []  # (-key, index, document)
        total = 0
        self.seen = self.seen_bytes = self.skipped_long = 0
        for batch in batches:
            batch_bytes = 0
            for text in batch:
                document = text.encode("utf-8") if isinstance(text, str) else bytes(text)
                size = len(document)
                batch_bytes += size + 1
                if not size:
                    continue
                self.seen += 1
                self.seen_bytes += size
                if max_document_bytes and size > max_document_bytes:
                    self.skipped_long += 1
                    continue
                key = rng.random()
                if total + size > max_bytes and heap and -heap[0][0] <= key:
                    continue
                heapq.heappush(heap, (-key, self.seen, document))
                total += size
                while total > max_bytes and heap:
                    total -= len(heapq.heappop(heap)[2])
            if progress is not None:
                progress(batch_bytes)
        self.documents = [document for _, _, document in sorted(heap, key=lambda item: item[1])]
        self.bytes = total
        self.sampled = len(self.documents) < self.seen - self.skipped_long


def iter_text_batches(texts, batch_size=1024):
    """Yields batches (lists or NumPy arrays) of strings from `texts`.

    Args:
        texts: an iterable of `str` (or UTF-8 `bytes`), or a
            `tf.data.Dataset` of scalar strings or of string batches.
        batch_size: the batch size for iterables and scalar datasets.
    """
    if isinstance(texts, tf.data.Dataset):
        if texts.element_spec.shape.rank == 0:
            texts = texts.batch(batch_size)
        yield from texts.as_numpy_iterator()
        return
    if isinstance(texts, (str, bytes)):
        raise DataError(
            f"Expected an iterable of strings (one per document), not a single string. Received: texts={texts[:40]!r}"
        )
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class _CountingBatches:
    """Wraps text batches and counts the non-empty documents that pass."""

    def __init__(self, make_batches):
        self.make_batches = make_batches
        self.documents = 0

    def __iter__(self):
        # Each pass re-reads the texts; `documents` counts the latest pass.
        self.documents = 0
        for batch in self.make_batches():
            self.documents += sum(1 for text in batch if len(text))
            yield batch


def _empty_corpus_error():
    return DataError(
        "Expected training text with at least one non-empty document for the tokenizer. "
        "Received: an empty corpus (after cleaning). Check the sources, --text-field and "
        "the cleaning flags (--min-length, --dedup)."
    )


def count_words(texts, batch_size=1024, progress=None):
    """Counts `basic_english` words (as UTF-8 bytes) with the in-graph splitter.

    Counting with the very ops the `WordTokenizer` runs guarantees that the
    vocabulary covers exactly the words the tokenizer will look up.
    """
    split = tf.function(
        lambda batch: basic_english_split(batch).flat_values,
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    counts = collections.Counter()
    for batch in iter_text_batches(texts, batch_size):
        counts.update(split(tf.constant(batch, dtype=tf.string)).numpy().tolist())
        if progress is not None:
            progress(sum(len(text) + 1 for text in batch))
    return counts


def train_tokenizer(
    kind,
    texts,
    vocab_size=None,
    min_freq=1,
    max_vocab=None,
    sentencepiece_model_type="unigram",
    lowercase=False,
    batch_size=1024,
    sample_bytes=None,
    progress=None,
):
    """Trains a tokenizer of one kind on training text.

    - `"word"`: a `WordTokenizer` (torchtext `basic_english`). Counts words
      in one pass; keeps words seen at least `min_freq` times, at most
      `vocab_size` ids in all (specials included), ordered by count then
      code point. With neither limit it mirrors the seed's
      `build_vocab_from_iterator`.
    - `"wordpiece"`: a `WordPieceTokenizer` trained with
      `keras_hub.tokenizers.compute_word_piece_vocabulary` (whose sizes are
      approximate, within 5%). `min_freq` does not apply.
    - `"sentencepiece"`: a `SentencePieceTokenizer` trained with
      `keras_hub.tokenizers.compute_sentence_piece_proto`, `"unigram"` or
      `"bpe"` (`sentencepiece_model_type`), on every core. SentencePiece
      holds its training sentences in memory and skips lines over 4192
      bytes, so it reads a bounded sample (`sample_bytes`). `min_freq` does
      not apply.
    - `"byte"`: a `ByteTokenizer`; nothing to train, `texts` is not read.

    Args:
        kind: one of `"word"`, `"wordpiece"`, `"sentencepiece"`, `"byte"`.
        texts: the training documents: an iterable of `str`, or a
            `tf.data.Dataset` of strings (scalars or batches). Read once.
        vocab_size: int. The vocabulary size (`--vocab-size`), special tokens
            included: an upper bound for every kind (`None`: no bound for
            `"word"`, 8000 for the subword kinds). When the corpus cannot fill
            it, the largest vocabulary the corpus supports is built and a
            one-line note says so on stderr. Must be `None` for `"byte"`.
        min_freq: int. `"word"` only (`--min-freq`); `None` means 1.
        max_vocab: int. `"word"` only: an alias of `vocab_size` that never
            raises when the corpus has fewer words (torchtext's
            `max_tokens`).
        sentencepiece_model_type: `"unigram"` or `"bpe"`.
        lowercase: bool. Lower-case inside the subword trainer and tokenizer.
        batch_size: documents per batch while counting.
        sample_bytes: the subword kinds learn from a uniform sample of the
            documents of at most this many bytes (default
            `TOKENIZER_SAMPLE_BYTES`, 32 MB), so that memory and time stay
            flat as the corpus grows; a smaller corpus is used whole.
        progress: optional callable, given the bytes of each batch read.

    Returns:
        The trained tokenizer layer.

    Raises:
        ConfigError: bad arguments, or a vocabulary size below what the
            tokenizer needs (naming `--vocab-size`).
        DataError: an empty corpus.

    Example:

    >>> tokenizer = train_tokenizer("word", ["The cat sat.", "The dog sat."])
    >>> tokenizer.get_vocabulary()
    ['<pad>', '<unk>', '<s>', '</s>', '.', 'sat', 'the', 'cat', 'dog']
    """
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(
            f"Expected --tokenizer to be one of {', '.join(TOKENIZER_KINDS)}. Received: --tokenizer={kind!r}"
        )
    if vocab_size is not None and (isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1):
        raise ConfigError(f"Expected --vocab-size to be a positive integer. Received: --vocab-size={vocab_size!r}")
    min_freq = 1 if min_freq is None else min_freq
    if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
        raise ConfigError(f"Expected --min-freq to be an integer >= 1. Received: --min-freq={min_freq!r}")
    if kind != "word" and min_freq != 1:
        raise ConfigError(
            f"Expected --min-freq only with --tokenizer word. Received: --tokenizer={kind}, --min-freq={min_freq}"
        )
    if kind == "byte":
        if vocab_size is not None:
            raise ConfigError(
                "Expected no --vocab-size with --tokenizer byte (its 258 ids are fixed). "
                f"Received: --vocab-size={vocab_size}"
            )
        return ByteTokenizer()
    if kind == "word":
        return _train_word(texts, vocab_size, min_freq, max_vocab, batch_size, progress)
    vocab_size = vocab_size or DEFAULT_SUBWORD_VOCABULARY_SIZE
    # One pass over the texts draws a bounded sample (see DocumentSample);
    # the trainers (and the retries of a too-large --vocab-size) read it.
    sample = DocumentSample(
        iter_text_batches(texts, batch_size),
        max_bytes=sample_bytes,
        max_document_bytes=SENTENCEPIECE_MAX_SENTENCE_BYTES if kind == "sentencepiece" else None,
        progress=progress,
    )
    if sample.sampled:
        print(
            f"[klm] tokenizer trained on a sample: {len(sample.documents):,} of {sample.seen:,} documents "
            f"({sample.bytes / 2**20:,.1f} of {sample.seen_bytes / 2**20:,.1f} MB)",
            file=sys.stderr,
        )
    batches = _CountingBatches(lambda: iter_text_batches(sample.documents, batch_size))
    dataset = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=tf.TensorSpec([None], tf.string))
    if kind == "wordpiece":
        return _train_wordpiece(dataset, batches, vocab_size, lowercase)
    if sentencepiece_model_type not in SENTENCEPIECE_MODEL_TYPES:
        raise ConfigError(
            f"Expected sentencepiece_model_type to be one of {', '.join(SENTENCEPIECE_MODEL_TYPES)}. "
            f"Received: sentencepiece_model_type={sentencepiece_model_type!r}"
        )
    return _train_sentencepiece(sample.documents, batches, vocab_size, sentencepiece_model_type, lowercase)


def note_smaller_vocabulary(requested, built, detail=""):
    """Says on stderr that the corpus could not fill `--vocab-size`."""
    print(
        f"note: --vocab-size {requested} is more than the corpus supports; built {built:,} tokens{detail}",
        file=sys.stderr,
    )


def _train_word(texts, vocab_size, min_freq, max_vocab, batch_size, progress=None):
    counts = count_words(texts, batch_size, progress)
    if not counts:
        raise _empty_corpus_error()
    vocabulary = build_word_vocabulary(counts, min_freq=min_freq)
    limit = min(x for x in (vocab_size, max_vocab, len(vocabulary)) if x is not None)
    if limit < len(WORD_SPECIAL_TOKENS) + 1:
        raise ConfigError(
            f"Expected --vocab-size > {len(WORD_SPECIAL_TOKENS)} (the special tokens). Received: --vocab-size={limit}"
        )
    if vocab_size is not None and vocab_size > len(vocabulary):
        note_smaller_vocabulary(
            vocab_size,
            len(vocabulary),
            f" ({len(vocabulary) - len(WORD_SPECIAL_TOKENS):,} distinct words seen at least --min-freq={min_freq} "
            f"times, plus {len(WORD_SPECIAL_TOKENS)} special tokens)",
        )
    return WordTokenizer(vocabulary[:limit])


def _train_wordpiece(dataset, batches, vocab_size, lowercase):
    minimum = len(WORD_PIECE_SPECIAL_TOKENS) + 1
    if vocab_size < minimum:
        raise ConfigError(
            f"Expected --vocab-size >= {minimum} for --tokenizer wordpiece. Received: --vocab-size={vocab_size}"
        )
    try:
        vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
            dataset,
            vocabulary_size=vocab_size,
            lowercase=lowercase,
            reserved_tokens=list(WORD_PIECE_SPECIAL_TOKENS),
        )
    except (StopIteration, RuntimeError):
        # tf-text's learner fails on an empty word count.
        if batches.documents == 0:
            raise _empty_corpus_error() from None
        raise
    if batches.documents == 0:
        raise _empty_corpus_error()
    if len(vocabulary) < vocab_size * (1 - WORDPIECE_SLACK):
        note_smaller_vocabulary(vocab_size, len(vocabulary))
    return WordPieceTokenizer(vocabulary, lowercase=lowercase)


# SentencePiece fails with "Vocabulary size too high (N). Please set it to a
# value <= M." when the corpus cannot fill N pieces; M is not always
# reachable either (unigram pruning), so training retries, backing off.
SENTENCEPIECE_RETRIES = 8


def _compute_sentence_piece_proto(documents, vocabulary_size, model_type, lowercase):
    """`keras_hub.tokenizers.compute_sentence_piece_proto`'s training, on every core."""
    import io
    import os

    import sentencepiece as spm

    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(documents),
        model_writer=writer,
        vocab_size=vocabulary_size,
        model_type=model_type,
        normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        num_threads=os.cpu_count() or 1,
        max_sentence_length=SENTENCEPIECE_MAX_SENTENCE_BYTES,
        minloglevel=2,
    )
    return writer.getvalue()


def _train_sentencepiece(documents, batches, vocab_size, model_type, lowercase):
    requested = size = vocab_size
    if not documents:
        raise _empty_corpus_error()
    for _ in range(SENTENCEPIECE_RETRIES):
        try:
            proto = _compute_sentence_piece_proto(documents, size, model_type, lowercase)
            break
        except RuntimeError as e:
            if not documents:
                raise _empty_corpus_error() from None
            too_small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", str(e))
            if too_small:
                raise ConfigError(
                    f"Expected --vocab-size >= {too_small.group(2)}: SentencePiece needs one id per distinct "
                    f"character of the training text plus its special tokens. Received: --vocab-size={requested}"
                ) from None
            if "too high" not in str(e):
                raise
            limit = re.search(r"<=\s*(\d+)", str(e))
            suggested = int(limit.group(1)) if limit else 0
            # The suggested size, or 10% less when it was just tried or missing.
            size = suggested if 0 < suggested < size else int(size * 0.9)
            minimum = len(SENTENCEPIECE_SPECIAL_TOKENS) + 1
            if size < minimum:
                raise ConfigError(
                    f"Expected a training text that can fill a SentencePiece {model_type} vocabulary of at least "
                    f"{minimum} tokens. Received: --vocab-size={requested}"
                ) from None
    else:
        raise ConfigError(
            f"Expected --vocab-size <= {size}: SentencePiece {model_type} cannot fill a larger vocabulary from this "
            f"training text. Received: --vocab-size={requested}"
        )
    if not documents:
        raise _empty_corpus_error()
    tokenizer = SentencePieceTokenizer(proto)
    if tokenizer.vocabulary_size() < requested:
        note_smaller_vocabulary(requested, tokenizer.vocabulary_size())
    return tokenizer
