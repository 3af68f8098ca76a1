"""Post-training quantization of language models with Keras's `model.quantize` (`klm quantize`).

Importing this package imports no Keras.
"""

from klm.quantize.config import CALIBRATED_MODES, MODES, QuantizeConfig
from klm.quantize.quantize import inherited_quantization, quantization_of, quantize_model, quantize_run, weight_bytes

__all__ = [
    "CALIBRATED_MODES",
    "MODES",
    "QuantizeConfig",
    "inherited_quantization",
    "quantization_of",
    "quantize_model",
    "quantize_run",
    "weight_bytes",
]
