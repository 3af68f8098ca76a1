"""Small shared helpers for klm's tests: tiny configs and fixed inputs."""

import numpy as np

TINY_VOCAB = 64


# The size of every tiny model of the unit tests (klm's and keras-hub's alike).
TINY_DIMS = dict(vocabulary_size=TINY_VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32, dropout=0.0)


def tiny_backbone_config(**overrides):
    """`KlmBackbone` arguments for a model small enough for unit tests."""
    config = dict(
        **TINY_DIMS,
        max_sequence_length=32,
        position_encoding="learned",
        normalize_first=True,
        activation="gelu",
        tie_embeddings=True,
    )
    config.update(overrides)
    return config


def token_batch(batch_size=2, seq_len=8, vocab=TINY_VOCAB, seed=0, padding=None):
    """Returns `{"token_ids", "padding_mask"}` int32 arrays.

    Args:
        padding: optional list of the number of trailing pad positions per row.
    """
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, vocab, size=(batch_size, seq_len)).astype("int32")
    padding_mask = np.ones((batch_size, seq_len), "int32")
    for row, pad in enumerate(padding or []):
        if pad:
            token_ids[row, -pad:] = 0
            padding_mask[row, -pad:] = 0
    return {"token_ids": token_ids, "padding_mask": padding_mask}


def reference_torch_parameter_count(vocabulary_size, hidden_dim=200, intermediate_dim=200, num_layers=2):
    """Parameters of the reference's PyTorch `TransformerModel` (computed by hand).

    Embedding `V*d`, decoder `d*V + V`, and per `nn.TransformerEncoderLayer`:
    in-projection `3d*d + 3d`, out-projection `d*d + d`, `linear1` `d*h + h`,
    `linear2` `h*d + d`, two LayerNorms `4d`. Sinusoidal positions: none.
    """
    d, h, V = hidden_dim, intermediate_dim, vocabulary_size
    per_layer = 3 * d * d + 3 * d + d * d + d + d * h + h + h * d + d + 4 * d
    return V * d + d * V + V + num_layers * per_layer


def tiny_gpt2_causal_lm(max_sequence_length=32, seed=0):
    """A keras-hub `GPT2CausalLM` of the unit tests' tiny size (vocabulary `TINY_VOCAB`), seeded, no preprocessor."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(**TINY_DIMS, max_sequence_length=max_sequence_length)
    return keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
