"""One decoding step with a key/value cache, shared by every klm decoder.

`KlmCausalLM.generate_step` (keras-hub's `generate()`), `klm.generate.generate_ids`
(`klm generate`, `klm evaluate` of SFT runs) and the in-graph `tf.while_loop`
of exported models all decode through these functions, so they compute the
same numbers. Only `keras.ops` are used: the functions run eagerly on every
backend, under `jax.jit`, and on symbolic tensors inside `tf.function`
(dynamic batch, prompt and cache lengths).

They accept a `klm.models.KlmCausalLM` or any keras-hub `CausalLM` (which
exposes `_build_cache` and `call_with_cache`, e.g. `GPT2CausalLM`).

The cache is an opaque value: create it with `build_cache` (or `prefill`) and
pass back what the previous call returned. For `KlmCausalLM` it is one float
tensor `(batch, num_layers, 2, cache_length, num_heads, head_dim)` in the
model's compute dtype (keys at `[:, :, 0]`, values at `[:, :, 1]`), so a
`tf.while_loop` can carry it with the shape invariant
`[None, num_layers, 2, None, num_heads, head_dim]`; keras-hub models use
their own layout (a tensor for GPT-2, Gemma, Llama...). A call may update the
cache it is given in place (it does on PyTorch, where a copy per step would
cost more than the step): always continue with the returned cache and never
reuse an earlier one. No gradients are recorded (PyTorch: `torch.no_grad`).

Example (greedy decoding of one batch of equal-length prompts):
```python
logits, cache = klm.decoding.prefill(lm, prompt_ids, total_length=n + new)
for index in range(n, n + new):
    next_ids = ops.argmax(logits, axis=-1)[:, None]          # (batch, 1)
    logits, cache = klm.decoding.decode_step(lm, next_ids, cache, index)
```
"""

import keras
from keras import ops

from klm import backend


def _is_klm(model):
    # `KlmCausalLM` decodes through its own `_decode` (one call for the whole
    # stack); keras-hub models through `call_with_cache`. Asked by method, not
    # class: `klm.models` imports this module, so it cannot import them back.
    return callable(getattr(model, "_decode", None))


def _float32(logits):
    if keras.backend.standardize_dtype(logits.dtype) != "float32":
        logits = ops.cast(logits, "float32")
    return logits


def decode_step(model, token_ids, cache, cache_update_index, *, return_hidden_states=False):
    """Next-token logits for `token_ids`, reading and extending the KV cache.

    Args:
        model: a `KlmCausalLM` or a keras-hub `CausalLM`.
        token_ids: int tensor `(batch, seq)`, usually `seq == 1` (the newest
            token); the tokens at absolute positions
            `cache_update_index .. cache_update_index + seq - 1`.
        cache: the cache from `build_cache`, `prefill` or the previous
            `decode_step`, holding every position before `cache_update_index`
            (its length, fixed when it was built, must exceed the last
            position written).
        cache_update_index: int or scalar int tensor (dynamic inside
            `tf.function` / `jax.jit`), the position of `token_ids[:, 0]`.
        return_hidden_states: also return the last position's final hidden
            states `(batch, hidden)` (keras-hub's `ContrastiveSampler` reads them).

    Returns:
        `(logits, cache)`: `logits`, float32 `(batch, vocabulary)`, predict the
        token after the last position of `token_ids` (what keras-hub's
        samplers take); `cache` has the keys/values of `token_ids` written
        at their positions (possibly in place, see the module docstring).
        With `return_hidden_states=True`, `(logits, hidden_states, cache)`.
    """
    with backend.decoding_scope():
        if _is_klm(model):
            logits, hidden_states, cache = model._decode(token_ids, cache, cache_update_index)
        else:
            logits, hidden_states, cache = model.call_with_cache(token_ids, cache, cache_update_index)
            logits, hidden_states = logits[:, -1, :], hidden_states[:, -1, :]
    logits = _float32(logits)
    if return_hidden_states:
        return logits, hidden_states, cache
    return logits, cache


def build_cache(model, prompt_ids, total_length):
    """A cache of `total_length` positions holding the keys/values of `prompt_ids`.

    Args:
        model: a `KlmCausalLM` or a keras-hub `CausalLM`.
        prompt_ids: int tensor `(batch, n)`, `n >= 1` (right-padded when the
            prompts differ in length: padding positions get keys/values too,
            which decoding overwrites as it reaches them).
        total_length: int or scalar int tensor `>= n`, the cache length: the
            prompt plus every token to be generated.

    Returns:
        The cache (positions `0 .. n - 1` filled). `KlmCausalLM` runs the
        prompt once and pads the cache to `total_length`; keras-hub models
        run the prompt right-padded to `total_length` (their `_build_cache`
        sizes the cache by its input, as their `generate()` does).
    """
    prompt_ids = ops.convert_to_tensor(prompt_ids)
    n = ops.shape(prompt_ids)[1]
    with backend.decoding_scope():
        if _is_klm(model):
            _, cache = model._build_cache(prompt_ids)
            return _pad_axis(cache, 3, total_length - n)
        _, cache = model._build_cache(_pad_axis(prompt_ids, 1, total_length - n))
        return cache


def prefill(model, prompt_ids, total_length):
    """`build_cache`, then `decode_step` on the prompt's last column.

    The first logits come from the same decoding step as every later one
    (position `n - 1` is decoded again; its keys/values are rewritten), so a
    loop that starts decoding at `n - 1` by itself computes the same numbers.

    Args:
        model, prompt_ids, total_length: see `build_cache`.

    Returns:
        `(logits, cache)`: float32 `(batch, vocabulary)` logits of the token
        after `prompt_ids[:, n - 1]` (for right-padded prompts of different
        lengths, only the longest rows' logits; decode shorter rows from their
        own last position instead), and the cache, ready for
        `decode_step(model, next_ids, cache, n)`.
    """
    prompt_ids = ops.convert_to_tensor(prompt_ids)
    n = ops.shape(prompt_ids)[1]
    cache = build_cache(model, prompt_ids, total_length)
    return decode_step(model, prompt_ids[:, n - 1 :], cache, n - 1)


def _pad_axis(x, axis, amount):
    """`x` zero-padded at the end of `axis` by `amount` (an int or a scalar tensor)."""
    if isinstance(amount, int):
        if amount == 0:
            return x
        widths = [[0, 0]] * len(x.shape)
        widths[axis] = [0, amount]
        return ops.pad(x, widths)
    # A dynamic amount (a tensor inside tf.function / jit): concatenate zeros,
    # which every backend accepts with symbolic sizes.
    shape = list(ops.shape(x))
    shape[axis] = amount
    return ops.concatenate([x, ops.zeros(shape, dtype=x.dtype)], axis=axis)


def select_rows(cache, rows):
    """The cache of the batch rows `rows` only (a batched decode dropping its finished rows).

    Args:
        cache: a cache from `build_cache`, `prefill` or `decode_step` (any
            structure of tensors with the batch first, as every keras-hub
            and klm cache has).
        rows: list of row indices to keep, in their new order.

    Returns:
        A new cache (a copy: the one given may be updated in place later).
    """
    rows = ops.convert_to_tensor(list(rows), dtype="int32")
    return keras.tree.map_structure(lambda tensor: ops.take(tensor, rows, axis=0), cache)
