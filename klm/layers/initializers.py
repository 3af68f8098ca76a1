"""Initializer helper shared by klm's layers."""

import keras


def fresh_initializer(initializer):
    """A new instance of `initializer` (an instance, name or config).

    Keras 3 initializers draw from a seed fixed when the instance is made, so
    one unseeded instance shared by several weights gives every weight of the
    same shape *the same values* (and weights of other shapes a prefix of
    the same stream). klm's layers receive one initializer per role and use
    it for many weights (every block's kernels, embedding and output
    projection), so each weight gets its own copy. The copy's seed comes from
    Python's `random`, which `keras.utils.set_random_seed` seeds, so runs
    stay reproducible.
    """
    return keras.initializers.get(keras.initializers.serialize(keras.initializers.get(initializer)))
