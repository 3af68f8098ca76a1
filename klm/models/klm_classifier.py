"""Sequence classifier task on top of `KlmBackbone`."""

import keras
from keras_hub.models import TextClassifier

from klm.layers.sequence_pooling import SequencePooling
from klm.models.describe import ParameterCountRepr
from klm.models.klm_backbone import KlmBackbone


@keras.saving.register_keras_serializable(package="klm")
class KlmClassifier(ParameterCountRepr, TextClassifier):
    """A classifier head on a (pretrained) `KlmBackbone`: token ids -> logits.

    Fine-tuning maximises `sum_i log P(y_i | x_i)`. Single-label heads are
    trained with softmax cross-entropy, multi-label heads with one sigmoid per
    class (binary cross-entropy); both output logits, and `compile()` picks
    the matching loss.

    Args:
        backbone: a `KlmBackbone`.
        num_classes: int. Number of classes (>= 2 for single-label, >= 1 for
            multi-label).
        multi_label: bool. Independent sigmoid per class instead of softmax.
        pooling: `"last"` (hidden state of the last real token) or `"mean"`.
        dropout: float. Dropout on the pooled vector.
        preprocessor: `None` (klm tokenizes in tf.data).

    Examples:
    ```python
    backbone = klm.models.backbone_from_preset("tiny", vocabulary_size=100)
    classifier = klm.models.KlmClassifier(backbone, num_classes=2)
    classifier.compile()
    classifier.fit(x={"token_ids": ids, "padding_mask": mask}, y=labels)
    ```
    """

    backbone_cls = KlmBackbone

    def __init__(
        self,
        backbone,
        num_classes,
        multi_label=False,
        pooling="last",
        dropout=0.1,
        preprocessor=None,
        **kwargs,
    ):
        if int(num_classes) < (1 if multi_label else 2):
            raise ValueError(
                "Expected num_classes >= 2 for a single-label classifier "
                f"(>= 1 for multi-label). Received: num_classes={num_classes}"
            )
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.pooler = SequencePooling(pooling, dtype=backbone.dtype_policy, name="pooler")
        self.output_dropout = keras.layers.Dropout(dropout, dtype=backbone.dtype_policy, name="output_dropout")
        self.output_dense = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
            # Logits in float32 under mixed precision keep the loss stable.
            dtype="float32",
            name="logits",
        )

        # === Config ===
        # Set before the functional init: keras-hub's Task calls compile() there.
        self.num_classes = int(num_classes)
        self.multi_label = bool(multi_label)
        self.pooling = pooling
        self.dropout = dropout

        # === Functional Model ===
        inputs = backbone.input
        hidden_states = backbone(inputs)  # (batch, seq, hidden)
        pooled = self.pooler(hidden_states, padding_mask=inputs["padding_mask"])  # (batch, hidden)
        pooled = self.output_dropout(pooled)
        outputs = self.output_dense(pooled)  # (batch, num_classes)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """Like `keras.Model.compile`, with losses and metrics that match the head."""
        if optimizer == "auto":
            optimizer = keras.optimizers.AdamW(5e-5)
        if loss == "auto":
            if self.multi_label:
                loss = keras.losses.BinaryCrossentropy(from_logits=True)
            else:
                loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            if self.multi_label:
                metrics = [keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")]
            else:
                metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        keras.Model.compile(self, optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # Restores a saved compile state through our compile() (Keras warns
        # about overridden compile() methods that lack this).
        keras.Model.compile_from_config(self, config)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "multi_label": self.multi_label,
                "pooling": self.pooling,
                "dropout": self.dropout,
            }
        )
        return config
