"""klm's Keras models: the backbone, the causal LM and the classifier."""

from klm.models.klm_backbone import KlmBackbone
from klm.models.klm_causal_lm import KlmCausalLM
from klm.models.klm_classifier import KlmClassifier
from klm.models.presets import PRESETS, backbone_from_preset, preset_config

__all__ = [
    "KlmBackbone",
    "KlmCausalLM",
    "KlmClassifier",
    "PRESETS",
    "backbone_from_preset",
    "preset_config",
]
