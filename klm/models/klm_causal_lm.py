"""Causal language-model task on top of `KlmBackbone`."""

import keras
from keras import ops
from keras_hub.models import CausalLM
from keras_hub.src.utils.tensor_utils import any_equal

from klm import backend, decoding
from klm.layers.causal_self_attention import decoding_call
from klm.models.describe import ParameterCountRepr
from klm.models.klm_backbone import KlmBackbone


@keras.saving.register_keras_serializable(package="klm")
class KlmCausalLM(ParameterCountRepr, CausalLM):
    """Next-token prediction: token ids -> logits over the vocabulary.

    A `keras_hub.models.CausalLM`, so `compile(sampler=...)` and `generate()`
    work with every keras-hub sampler (`"greedy"`, `"top_k"`, `"top_p"`,
    temperature via the sampler's `temperature=`). Generation uses a
    key/value cache: each new token costs one position's worth of compute.

    Training maximises `sum_t log P(w_t | w_<t)`: fit on `(x, y)` with `y`
    the inputs shifted left by one, loss sparse categorical cross-entropy
    from logits (the default set by `compile()`).

    Inputs: `{"token_ids", "padding_mask"}`, plus optionally
    `"segment_ids"` for packed sequences (see `KlmBackbone`: attention stays
    within each packed example and positions restart per example).

    Args:
        backbone: a `KlmBackbone`.
        preprocessor: `None`; klm tokenizes in its tf.data pipelines, so the
            task takes token ids. Kept for keras-hub API compatibility.

    Examples:
    ```python
    backbone = klm.models.backbone_from_preset("tiny", vocabulary_size=100)
    lm = klm.models.KlmCausalLM(backbone)
    lm.compile(sampler="greedy")
    out = lm.generate(
        {"token_ids": np.array([[5, 6, 0, 0]]), "padding_mask": np.array([[1, 1, 0, 0]])},
        stop_token_ids=None,
    )
    ```
    """

    backbone_cls = KlmBackbone

    def __init__(self, backbone, preprocessor=None, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor

        # === Functional Model ===
        inputs = backbone.input
        hidden_states = backbone(inputs)
        outputs = backbone.token_embedding(hidden_states, reverse=True)  # (batch, seq, vocab)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        if isinstance(inputs, dict) and "segment_ids" in inputs:
            hidden_states = self.backbone(inputs, training=training)
            return self.backbone.token_embedding(hidden_states, reverse=True)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def call_with_cache(self, token_ids, cache, cache_update_index):
        """Forward pass over `token_ids` that reads and extends a KV cache.

        Args:
            token_ids: int tensor `(batch, seq)`.
            cache: float tensor `(batch, num_layers, 2, max_len, heads, head_dim)`.
            cache_update_index: int (tensor), absolute position of
                `token_ids[:, 0]`.

        Returns:
            `(logits, hidden_states, cache)`. The cache may be updated in
            place (see `klm.decoding`): continue with the returned one.
        """
        hidden_states, cache = self._hidden_states_with_cache(token_ids, cache, cache_update_index)
        logits = self.backbone.token_embedding(hidden_states, reverse=True)
        return logits, hidden_states, cache

    def _hidden_states_with_cache(self, token_ids, cache, cache_update_index):
        """Final hidden states `(batch, seq, hidden)` of `token_ids` and the extended cache."""
        backbone = self.backbone
        cache_update_index = backend.cache_index(cache_update_index)
        x = backbone.embed(token_ids, start_index=cache_update_index, training=False)
        caches = []
        for i, transformer_layer in enumerate(backbone.transformer_layers):
            x, next_cache = decoding_call(
                transformer_layer, x, cache=cache[:, i, ...], cache_update_index=cache_update_index
            )
            caches.append(next_cache)
        cache = backend.stack_layer_caches(cache, caches)
        if backbone.layer_norm is not None:
            x = decoding_call(backbone.layer_norm, x)
        return x, cache

    def _decode(self, token_ids, cache, cache_update_index):
        """`(logits, hidden_states, cache)` of the last position only (`klm.decoding.decode_step`)."""
        hidden_states, cache = self._hidden_states_with_cache(token_ids, cache, cache_update_index)
        hidden_states = hidden_states[:, -1, :]
        logits = decoding_call(self.backbone.token_embedding, hidden_states, reverse=True)
        return logits, hidden_states, cache

    def _build_cache(self, token_ids):
        """Runs the prompt once to fill a fresh cache of its length: `(hidden_states, cache)`."""
        backbone = self.backbone
        batch_size, max_length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
        head_dim = backbone.hidden_dim // backbone.num_heads
        shape = [batch_size, backbone.num_layers, 2, max_length, backbone.num_heads, head_dim]
        cache = ops.zeros(shape, dtype=self.compute_dtype)
        return self._hidden_states_with_cache(token_ids, cache, 0)

    def generate_step(self, inputs, stop_token_ids=None):
        """One compilable generation pass over a batch (see keras-hub's `CausalLM`).

        Decodes with `klm.decoding.decode_step`, as `klm generate` and the
        exported graph do.

        Args:
            inputs: dict with `"token_ids"` and `"padding_mask"`, the prompts
                right-padded to the total length to generate.
            stop_token_ids: tuple of ids that end a sequence, or `None`.
        """
        token_ids, padding_mask = inputs["token_ids"], inputs["padding_mask"]
        # The prompts are padded to the total length already: the cache is
        # built over all of it (a static shape under jit).
        hidden_states, cache = self._build_cache(token_ids)
        # Generation starts after the shortest prompt; longer prompts keep
        # their own tokens where the mask is set.
        row_lengths = ops.sum(ops.cast(padding_mask, "int32"), axis=-1)
        index = ops.min(row_lengths)

        def next(prompt, cache, index):
            cache_update_index = index - 1
            batch_size = ops.shape(prompt)[0]
            prompt = ops.slice(prompt, [0, cache_update_index], [batch_size, 1])
            return decoding.decode_step(self, prompt, cache, cache_update_index, return_hidden_states=True)

        token_ids = self.sampler(
            next=next,
            prompt=token_ids,
            cache=cache,
            index=index,
            mask=padding_mask,
            stop_token_ids=stop_token_ids,
            hidden_states=hidden_states,
            model=self,
        )
        if stop_token_ids is not None:
            # Mask everything after the first stop token each row generated.
            end_locations = any_equal(token_ids, stop_token_ids, ops.logical_not(padding_mask))
            end_locations = ops.cast(end_locations, "int32")
            cumsum = ops.cast(ops.cumsum(end_locations, axis=-1), "int32")
            overflow = cumsum - end_locations
            padding_mask = ops.logical_not(ops.cast(overflow, "bool"))
        else:
            padding_mask = ops.ones_like(token_ids, dtype="bool")
        return {"token_ids": token_ids, "padding_mask": padding_mask}
