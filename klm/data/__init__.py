"""klm's data layer: sources, cleaning, tokenizers, tf.data pipelines, `prepare`.

Public API (each name is imported on first use, and most import TensorFlow,
tf-text and keras-hub, hence Keras: select the backend first, see
`klm.backend`; `import klm.data` alone imports none of them):

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

# Name -> module. Importing a name imports its module (TensorFlow, tf-text and keras-hub
# for most), on first use: `import klm.data.prepared.config` or `klm.data.text.cleaning_config`
# (the configs whose fields are `klm prepare`'s options) must not import TensorFlow, so that
# `klm prepare --help` stays fast; those modules import only their own light dependencies.
_EXPORTS = {
    "basic_english_python": "klm.data.tokenizers",
    "ByteTokenizer": "klm.data.tokenizers",
    "classification_dataset": "klm.data.classification.batches",
    "ClassificationData": "klm.data.classification.encoded_splits",
    "CleaningConfig": "klm.data.text.cleaning_config",
    "Corpus": "klm.data.lm.corpus",
    "ENGLISH_STOP_WORDS": "klm.data.text.stop_words",
    "expand_sources": "klm.data.text.sources",
    "find_wikitext_splits": "klm.data.text.sources",
    "get_dataset": "klm.data.downloads",
    "git_blob_id": "klm.checksums",
    "iter_documents": "klm.data.text.sources",
    "LabelledTexts": "klm.data.classification.labelled_files",
    "LabelVocabulary": "klm.data.classification.label_vocabulary",
    "lm_dataset": "klm.data.lm.batches",
    "lm_model_inputs": "klm.data.lm.model_inputs",
    "lm_steps_per_epoch": "klm.data.lm.batches",
    "lm_tokens_per_epoch": "klm.data.lm.batches",
    "load_classification_data": "klm.data.classification.encoded_splits",
    "load_corpus": "klm.data.lm.corpus",
    "load_prepared": "klm.data.prepared.reader",
    "load_tokenizer": "klm.data.tokenizers",
    "num_tokens": "klm.data.lm.model_inputs",
    "prepare": "klm.data.prepared.writer",
    "PrepareConfig": "klm.data.prepared.config",
    "PreparedData": "klm.data.prepared.reader",
    "PreparedSplit": "klm.data.prepared.shards",
    "read_labelled_texts": "klm.data.classification.labelled_files",
    "save_tokenizer": "klm.data.tokenizers",
    "SentencePieceTokenizer": "klm.data.tokenizers",
    "SourceFile": "klm.data.text.sources",
    "TextCleaner": "klm.data.text.cleaner",
    "TOKENIZER_KINDS": "klm.data.tokenizers",
    "train_tokenizer": "klm.data.tokenizers",
    "WordPieceTokenizer": "klm.data.tokenizers",
    "WordTokenizer": "klm.data.tokenizers",
}

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


def __getattr__(name):
    # PEP 562: `klm.data.load_corpus` and `from klm.data import load_corpus` import the module on first use.
    if name not in _EXPORTS:
        raise AttributeError(f"module 'klm.data' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
