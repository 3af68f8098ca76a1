"""klm's data layer: sources, cleaning, tokenizers, tf.data pipelines, `prepare`.

Public API (importing `klm.data` imports TensorFlow, tf-text and keras-hub,
hence Keras: select the backend first, see `klm.backend`):

- Sources and downloads: `expand_sources`, `iter_documents`,
  `find_wikitext_splits`, `SourceFile`, `get_dataset` (`wikitext-2`,
  `wikitext-103`), `git_blob_id`.
- Cleaning: `CleaningConfig`, `TextCleaner`, `ENGLISH_STOP_WORDS`; privacy
  scrubbing patterns in `klm.data.text.privacy`.
- Tokenizers: `WordTokenizer`, `WordPieceTokenizer`,
  `SentencePieceTokenizer`, `ByteTokenizer`, `TOKENIZER_KINDS`,
  `train_tokenizer`, `save_tokenizer`, `load_tokenizer`,
  `basic_english_python`.
- Language modelling: `lm_dataset`, `lm_steps_per_epoch`,
  `lm_tokens_per_epoch`, `load_corpus`, `Corpus`, `lm_model_inputs`,
  `num_tokens`.
- Prepared folders: `PrepareConfig`, `prepare`, `load_prepared`,
  `PreparedData`, `PreparedSplit`.
- Classification: `read_labelled_texts`, `LabelledTexts`, `LabelVocabulary`,
  `load_classification_data`, `ClassificationData`,
  `classification_dataset`.

The modules, grouped by the path each serves:

    text/            sources, raw lines and binary detection, cleaning, stop
                     words, privacy, the clean/tokenize stages (`clean_and_tokenize`)
    lm/              load_corpus (`corpus`), lm_dataset (`batches`), `model_inputs`
    classification/  labelled files -> label vocabulary -> encoded splits -> batches
    prepared/        the `klm prepare` folder: `manifest`, `config`, `writer`,
                     `shards`, `reader`
    tokenizers/      the tokenizer layers, `training`, `tokenizer_io`
    downloads.py     named datasets, downloaded once and cached

The data code runs on TensorFlow (`tf.data`, `tf.strings`, tf-text) and
Python whatever the Keras backend; it never calls backend ops.
"""

from klm.checksums import git_blob_id
from klm.data.classification.batches import classification_dataset
from klm.data.classification.encoded_splits import ClassificationData, load_classification_data
from klm.data.classification.label_vocabulary import LabelVocabulary
from klm.data.classification.labelled_files import LabelledTexts, read_labelled_texts
from klm.data.downloads import get_dataset
from klm.data.lm.batches import lm_dataset, lm_steps_per_epoch, lm_tokens_per_epoch
from klm.data.lm.corpus import Corpus, load_corpus
from klm.data.lm.model_inputs import lm_model_inputs, num_tokens
from klm.data.prepared.config import PrepareConfig
from klm.data.prepared.reader import PreparedData, load_prepared
from klm.data.prepared.shards import PreparedSplit
from klm.data.prepared.writer import prepare
from klm.data.text.cleaner import TextCleaner
from klm.data.text.cleaning_config import CleaningConfig
from klm.data.text.sources import SourceFile, expand_sources, find_wikitext_splits, iter_documents
from klm.data.text.stop_words import ENGLISH_STOP_WORDS
from klm.data.tokenizers import (
    TOKENIZER_KINDS,
    ByteTokenizer,
    SentencePieceTokenizer,
    WordPieceTokenizer,
    WordTokenizer,
    basic_english_python,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

__all__ = [
    "basic_english_python",
    "ByteTokenizer",
    "classification_dataset",
    "ClassificationData",
    "CleaningConfig",
    "Corpus",
    "ENGLISH_STOP_WORDS",
    "expand_sources",
    "find_wikitext_splits",
    "get_dataset",
    "git_blob_id",
    "iter_documents",
    "LabelledTexts",
    "LabelVocabulary",
    "lm_dataset",
    "lm_model_inputs",
    "lm_steps_per_epoch",
    "lm_tokens_per_epoch",
    "load_classification_data",
    "load_corpus",
    "load_prepared",
    "load_tokenizer",
    "num_tokens",
    "prepare",
    "PrepareConfig",
    "PreparedData",
    "PreparedSplit",
    "read_labelled_texts",
    "save_tokenizer",
    "SentencePieceTokenizer",
    "SourceFile",
    "TextCleaner",
    "TOKENIZER_KINDS",
    "train_tokenizer",
    "WordPieceTokenizer",
    "WordTokenizer",
]
