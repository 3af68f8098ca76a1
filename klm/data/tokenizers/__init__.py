"""klm's tokenizers: keras-hub tokenizer layers that run in tf.data and TF graphs.

| kind            | class                    | pad | unk | start | end (EOS) | vocabulary size |
|-----------------|--------------------------|-----|-----|-------|-----------|-----------------|
| `word`          | `WordTokenizer`          | 0   | 1   | 2     | 3         | trained         |
| `wordpiece`     | `WordPieceTokenizer`     | 0   | 1   | 2     | 3         | trained (~size) |
| `sentencepiece` | `SentencePieceTokenizer` | 0   | 1   | 2     | 3         | trained         |
| `byte`          | `ByteTokenizer`          | 256 | -   | -     | 257       | 258             |

Every tokenizer has `tokenize`, `detokenize`, `vocabulary_size()` and the
attributes `pad_token_id`, `unk_token_id`, `start_token_id`, `end_token_id`.
Train one with `train_tokenizer`, save and load it with `save_tokenizer` /
`load_tokenizer`.
"""

from klm.data.tokenizers.byte_tokenizer import ByteTokenizer
from klm.data.tokenizers.sentence_piece_tokenizer import SentencePieceTokenizer
from klm.data.tokenizers.tokenizer_io import load_tokenizer, save_tokenizer, special_token_ids, tokenizer_kind
from klm.data.tokenizers.training import TOKENIZER_KINDS, train_tokenizer
from klm.data.tokenizers.word_piece_tokenizer import WordPieceTokenizer
from klm.data.tokenizers.word_tokenizer import WordTokenizer, basic_english_python, build_word_vocabulary

__all__ = [
    "basic_english_python",
    "build_word_vocabulary",
    "ByteTokenizer",
    "load_tokenizer",
    "save_tokenizer",
    "SentencePieceTokenizer",
    "special_token_ids",
    "tokenizer_kind",
    "TOKENIZER_KINDS",
    "train_tokenizer",
    "WordPieceTokenizer",
    "WordTokenizer",
]
