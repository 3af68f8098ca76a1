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
from klm.data.tokenizers.tokenizer_io import load_tokenizer
from klm.data.tokenizers.tokenizer_io import save_tokenizer
from klm.data.tokenizers.tokenizer_io import special_token_ids
from klm.data.tokenizers.tokenizer_io import tokenizer_kind
from klm.data.tokenizers.train_tokenizer import TOKENIZER_KINDS
from klm.data.tokenizers.train_tokenizer import train_tokenizer
from klm.data.tokenizers.word_piece_tokenizer import WordPieceTokenizer
from klm.data.tokenizers.word_tokenizer import WordTokenizer
from klm.data.tokenizers.word_tokenizer import basic_english_python
from klm.data.tokenizers.word_tokenizer import build_word_vocabulary
