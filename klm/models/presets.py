"""Named model sizes.

| preset | layers | hidden | heads | ffn  | positions  | norm | act  | output           |
|--------|--------|--------|-------|------|------------|------|------|------------------|
| seed   | 2      | 200    | 2     | 200  | sinusoidal | post | relu | untied, bias     |
| tiny   | 2      | 32     | 2     | 64   | learned    | pre  | gelu | tied             |
| small  | 6      | 384    | 6     | 1536 | rotary     | pre  | gelu | tied             |
| base   | 12     | 768    | 12    | 3072 | learned    | pre  | gelu | tied (GPT-2 124M)|

`seed` is exactly the founding document's PyTorch model (emsize 200, nhid 200,
2 layers, 2 heads, dropout 0.2, `nn.TransformerEncoderLayer` post-LN with
ReLU, embeddings scaled by sqrt(200), an untied `nn.Linear` decoder with
bias), so its parameter count equals the PyTorch model's for the same
vocabulary, and its initialisation is the reference's (`initialization="pytorch"`).
`small` has about 10-20M parameters for vocabularies of 8k-30k;
`base` is GPT-2 small's shape (124M with GPT-2's 50,257-token vocabulary).

`small` and `base` drop nothing inside attention (`attention_dropout=0.0`;
residual and feed-forward dropout stay 0.1; `--attention-dropout` sets it).
Attention dropout is the one dropout that decides the attention kernel
(`klm.backend.choose_attention_path`): without it every backend trains with
its fused kernel (PyTorch SDPA / flash attention, cuDNN flash attention
under JAX on a GPU); with it JAX and TensorFlow must materialise the
`(batch, heads, seq, seq)` probabilities in float32 for every layer (805 MB a
layer at `base`'s 16 x 1024, kept for the backward pass), and only PyTorch
keeps a fused kernel. nanoGPT pretrains GPT-2 with dropout 0 and today's
decoder-only models use no attention dropout. On a CPU, PyTorch's SDPA
itself leaves its flash kernel for its math kernel when `dropout_p > 0`
(profiled: 0.51 s -> 1.02 s for a forward + backward at 4 x 6 heads x 512);
the GPU cost is measured by examples/benchmarks/gpu_check.py (`base` vs
`base-attn` rows). `seed` keeps the reference's dropout 0.2 on the
attention probabilities too (`nn.MultiheadAttention`).
"""

from klm.errors import ConfigError

PRESETS = {
    "seed": dict(
        num_layers=2,
        num_heads=2,
        hidden_dim=200,
        intermediate_dim=200,
        dropout=0.2,
        max_sequence_length=4096,
        position_encoding="sinusoidal",
        normalize_first=False,
        activation="relu",
        tie_embeddings=False,
        scale_embeddings=True,
        output_bias=True,
        initialization="pytorch",
    ),
    "tiny": dict(
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        max_sequence_length=256,
        position_encoding="learned",
        normalize_first=True,
        activation="gelu",
        tie_embeddings=True,
    ),
    "small": dict(
        num_layers=6,
        num_heads=6,
        hidden_dim=384,
        intermediate_dim=1536,
        dropout=0.1,
        attention_dropout=0.0,
        max_sequence_length=1024,
        position_encoding="rotary",
        normalize_first=True,
        activation="gelu",
        tie_embeddings=True,
    ),
    "base": dict(
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        intermediate_dim=3072,
        dropout=0.1,
        attention_dropout=0.0,
        max_sequence_length=1024,
        position_encoding="learned",
        normalize_first=True,
        activation="gelu",
        tie_embeddings=True,
    ),
}


def preset_config(name, vocabulary_size, **overrides):
    """Returns the `KlmBackbone` constructor arguments of preset `name`.

    Args:
        name: one of `PRESETS`.
        vocabulary_size: int. The tokenizer's vocabulary size.
        **overrides: any `KlmBackbone` argument to change (e.g. `dropout`).
    """
    if name not in PRESETS:
        raise ValueError(f"Expected a preset in {sorted(PRESETS)}. Received: preset={name!r}")
    config = dict(PRESETS[name], vocabulary_size=int(vocabulary_size))
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def backbone_from_preset(name, vocabulary_size, **overrides):
    """Builds a `KlmBackbone` of preset `name` for a vocabulary size.

    Examples:
    ```python
    backbone = klm.models.backbone_from_preset("seed", vocabulary_size=28_782)
    print(backbone)  # <KlmBackbone 13,... params vocabulary_size=28782 ...>
    ```
    """
    from klm.models.klm_backbone import KlmBackbone

    return KlmBackbone(**preset_config(name, vocabulary_size, **overrides))


def max_positions(name):
    """The most positions preset `name` can encode (`max_sequence_length` of learned positions), or `None`.

    Sinusoidal and rotary positions have no table, so they have no limit.
    """
    if name not in PRESETS:
        return None
    preset = PRESETS[name]
    return preset["max_sequence_length"] if preset["position_encoding"] == "learned" else None


def check_seq_len(seq_len, limit, what, flag="--seq-len"):
    """Raises `ConfigError` when `seq_len` tokens do not fit `limit` positions (`None`: no limit).

    Args:
        seq_len: the sequence length asked for.
        limit: the model's positions, or `None`.
        what: whose positions they are, for the message ("the tiny preset's learned positions").
        flag: the flag that set `seq_len`.
    """

    if limit is not None and seq_len is not None and int(seq_len) > int(limit):
        raise ConfigError(
            f"Expected {flag} <= {limit} ({what}): longer sequences have no position to encode. Lower {flag}. "
            f"Received: {flag}={seq_len}"
        )


def check_preset_seq_len(name, seq_len, flag="--seq-len"):
    """`ConfigError` when preset `name` cannot encode `seq_len` positions (the `tiny` preset has 256).

    Example:
    ```python
    check_preset_seq_len("tiny", 512)  # ConfigError: Expected --seq-len <= 256 (the tiny preset's ...)
    ```
    """
    check_seq_len(seq_len, max_positions(name), f"the {name} preset's learned positions", flag)
