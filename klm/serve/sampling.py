"""Choosing one request's next token from its row of a batch's logits (numpy, per row).

A batch decodes requests with different temperatures, `top_p` and seeds, so
each row is sampled by itself on the host (keras-hub's samplers take one
temperature for a whole batch). Each request owns its random generator, so a
seeded request gets the same tokens whichever requests share its batch.
Temperature 0 is greedy decoding: the arg-max, the token `klm generate
--sampler greedy` picks.
"""

import numpy as np


def sample_token(logits, temperature=1.0, top_p=1.0, rng=None):
    """The next token id from one row of float logits.

    Args:
        logits: 1-D array `(vocabulary,)`.
        temperature: 0 for greedy; else the softmax temperature.
        top_p: nucleus sampling: draw among the most likely tokens whose
            probabilities add up to at least `top_p` (1: all of them).
        rng: a `numpy.random.Generator` (a fresh unseeded one if `None`).

    Returns:
        An int.

    Examples:
    ```python
    sample_token(np.array([0.1, 2.0, -1.0]), temperature=0)  # 1
    ```
    """
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    scaled = logits / temperature
    probabilities = np.exp(scaled - scaled.max())
    probabilities /= probabilities.sum()
    if top_p < 1.0:
        order = np.argsort(-probabilities, kind="stable")
        cumulative = np.cumsum(probabilities[order])
        # Keep the smallest prefix whose mass reaches top_p (at least one token).
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]
        kept = np.zeros_like(probabilities)
        kept[keep] = probabilities[keep]
        probabilities = kept / kept.sum()
    rng = rng if rng is not None else np.random.default_rng()
    return int(rng.choice(len(probabilities), p=probabilities))
