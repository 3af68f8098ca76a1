"""Metrics: perplexity from a loss; accuracy, macro-F1 and confusion matrix of a classifier."""

import math

import numpy as np


def perplexity(loss):
    """`exp(loss)`, clamped so that a diverged loss gives a huge number, not an overflow."""
    return math.exp(min(loss, 700))


def classification_metrics(model, dataset, labels, multi_label):
    """Accuracy, macro-F1 and (single-label) confusion matrix over a dataset."""
    import keras

    predictions, targets = [], []
    for x, y in dataset:
        logits = keras.ops.convert_to_numpy(model(x, training=False))
        predictions.append(logits)
        targets.append(np.asarray(y))
    logits = np.concatenate(predictions)
    y = np.concatenate(targets)
    num_classes = len(labels)
    if multi_label:
        predicted = logits > 0.0
        truth = y > 0.5
        f1s = []
        for c in range(num_classes):
            tp = np.sum(predicted[:, c] & truth[:, c])
            fp = np.sum(predicted[:, c] & ~truth[:, c])
            fn = np.sum(~predicted[:, c] & truth[:, c])
            f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
        return {
            "examples": int(len(y)),
            "accuracy": float(np.mean(predicted == truth)),
            "exact_match": float(np.mean(np.all(predicted == truth, axis=1))),
            "macro_f1": float(np.mean(f1s)),
            "f1_per_label": {labels[c]: float(f1s[c]) for c in range(num_classes)},
        }
    predicted = np.argmax(logits, axis=-1)
    y = y.astype("int64").reshape(-1)
    confusion = np.zeros((num_classes, num_classes), dtype="int64")
    np.add.at(confusion, (y, predicted), 1)
    f1s = []
    for c in range(num_classes):
        tp = confusion[c, c]
        fp = confusion[:, c].sum() - tp
        fn = confusion[c, :].sum() - tp
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {
        "examples": int(len(y)),
        "accuracy": float(np.mean(predicted == y)),
        "macro_f1": float(np.mean(f1s)),
        "confusion_matrix": confusion.tolist(),
        "labels": list(labels),
    }
