"""klm's data layer: sources, cleaning, tokenizers, tf.data pipelines, `prepare`.

Public API (importing `klm.data` imports TensorFlow, tf-text and keras-hub,
hence Keras: select the backend first, see `klm.backend`):

- Sources and datasets: `expand_sources`, `iter_documents`,
  `find_wikitext_splits`, `get_dataset` (`wikitext-2`, `wikitext-103`).
- Cleaning: `CleaningConfig`, `TextCleaner`, `ENGLISH_STOP_WORDS`; privacy
  scrubbing patterns in `klm.data.privacy`.
- Tokenizers: `WordTokenizer`, `WordPieceTokenizer`,
  `SentencePieceTokenizer`, `ByteTokenizer`, `train_tokenizer`,
  `save_tokenizer`, `load_tokenizer`, `basic_english_python`.
- Language modelling: `lm_dataset`, `lm_steps_per_epoch`, `lm_tokens_per_epoch`, `load_corpus`,
  `Corpus`, `lm_model_inputs`, `num_tokens`.
- Prepared folders: `PrepareConfig`, `prepare`, `load_prepared`,
  `PreparedData`, `PreparedSplit`.
- Classification: `read_labelled_texts`, `LabelledTexts`, `LabelVocabulary`,
  `load_classification_data`, `ClassificationData`,
  `classification_dataset`.

The data code runs on TensorFlow (`tf.data`, `tf.strings`, tf-text) and
Python whatever the Keras backend; it never calls backend ops.
"""

from klm.data.classification_data import ClassificationData
from klm.data.classification_data import load_classification_data
from klm.data.classification_dataset import classification_dataset
from klm.data.cleaning_config import CleaningConfig
from klm.data.corpus import Corpus
from klm.data.corpus import load_corpus
from klm.data.datasets import get_dataset
from klm.data.datasets import git_blob_id
from klm.data.label_vocabulary import LabelVocabulary
from klm.data.labelled_texts import LabelledTexts
from klm.data.labelled_texts import read_labelled_texts
from klm.data.lm_dataset import lm_dataset
from klm.data.lm_inputs import lm_model_inputs
from klm.data.lm_inputs import num_tokens
from klm.data.lm_dataset import lm_steps_per_epoch
from klm.data.lm_dataset import lm_tokens_per_epoch
from klm.data.prepare import prepare
from klm.data.prepare_config import PrepareConfig
from klm.data.prepared_data import PreparedData
from klm.data.prepared_data import load_prepared
from klm.data.prepared_split import PreparedSplit
from klm.data.sources import SourceFile
from klm.data.sources import expand_sources
from klm.data.sources import find_wikitext_splits
from klm.data.sources import iter_documents
from klm.data.stop_words import ENGLISH_STOP_WORDS
from klm.data.text_cleaner import TextCleaner
from klm.data.tokenizers import ByteTokenizer
from klm.data.tokenizers import SentencePieceTokenizer
from klm.data.tokenizers import TOKENIZER_KINDS
from klm.data.tokenizers import WordPieceTokenizer
from klm.data.tokenizers import WordTokenizer
from klm.data.tokenizers import basic_english_python
from klm.data.tokenizers import load_tokenizer
from klm.data.tokenizers import save_tokenizer
from klm.data.tokenizers import train_tokenizer
