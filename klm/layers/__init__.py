"""klm's Keras layers (one public class per module)."""

from klm.layers.causal_self_attention import CausalSelfAttention
from klm.layers.decoder_block import DecoderBlock
from klm.layers.sequence_pooling import SequencePooling
from klm.layers.token_embedding import TokenEmbedding

__all__ = ["CausalSelfAttention", "DecoderBlock", "SequencePooling", "TokenEmbedding"]
