"""Supervised fine-tuning for generation: prompt -> response, chat and instruction data.

- `read_conversations(path)` -> `Conversation`s: prompt/response, Alpaca and
  chat JSONL, TSV/CSV (`klm.sft.conversations`).
- `PromptTemplate` (`{system}`/`{prompt}`/`{response}` text templates, klm's
  `DEFAULT_TEMPLATE`) and `ChatTemplate` (a checkpoint's Jinja chat
  template, rendered in jinja2's sandbox).
- `encode_conversations`: tokens, response mask, truncation
  (`klm.sft.encoding`); padded and packed batches (`klm.sft.batching`).
- `SftConfig`: the `klm finetune --task sft` config; the recipe itself,
  `klm.sft.recipe.finetune_sft`, is imported from its module (it uses
  `klm.generate`, which uses this package's data modules).
- `klm.sft.evaluation`: response loss, exact match, token F1.

Importing this package imports no Keras.
"""

from klm.sft.chat_template import ChatTemplate
from klm.sft.config import SftConfig
from klm.sft.conversations import Conversation, read_conversations
from klm.sft.encoding import EncodedExample, encode_conversations
from klm.sft.prompt_template import DEFAULT_TEMPLATE, PromptTemplate, template_from_dict

__all__ = [
    "ChatTemplate",
    "Conversation",
    "DEFAULT_TEMPLATE",
    "EncodedExample",
    "PromptTemplate",
    "SftConfig",
    "encode_conversations",
    "read_conversations",
    "template_from_dict",
]
