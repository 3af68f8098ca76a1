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


# Above this share of `<unk>` tokens a perplexity says little about the text:
# the model is mostly predicting `<unk>`, which a tiny model learns quickly, so
# an unreadable corpus (another language or script than the tokenizer was
# trained on, or data that is not text) can even get a *good* perplexity.
# Text in the tokenizer's own language and domain has a few percent `<unk>`
# under a word vocabulary (rare words only); out-of-domain text stays well
# below half. Half the tokens unknown means most of the text is invisible to
# the model, whatever the tokenizer.
UNKNOWN_SHARE_WARNING = 0.5


def unknown_token_report(tokens, unk_token_id, what="the evaluated data"):
    """The count and share of `<unk>` tokens in `tokens`, and a warning when the share is high.

    Args:
        tokens: 1-D token ids (any array-like).
        unk_token_id: the tokenizer's unknown-token id, or `None` (a byte
            tokenizer, byte-level BPE): then there is nothing to report.
        what: how the warning names the data.

    Returns:
        `{}` without an unknown token; else a dict with `unknown_tokens`,
        `unknown_token_share` (rounded to 4 places) and, when the share
        exceeds `UNKNOWN_SHARE_WARNING`, `warnings`: a list with one message.

    Example:

    >>> unknown_token_report([1, 1, 1, 5], unk_token_id=1)["unknown_token_share"]
    0.75
    """
    if unk_token_id is None:
        return {}
    tokens = np.asarray(tokens).reshape(-1)
    unknown = int(np.count_nonzero(tokens == int(unk_token_id)))
    share = unknown / len(tokens) if len(tokens) else 0.0
    report = {"unknown_tokens": unknown, "unknown_token_share": round(share, 4)}
    if share > UNKNOWN_SHARE_WARNING:
        report["warnings"] = [
            f"{share:.1%} of the tokens of {what} are <unk> ({unknown:,} of {len(tokens):,}): the tokenizer "
            f"cannot read most of this text (another language or script, or not text), so the perplexity "
            f"measures how well the model predicts <unk>, not the text."
        ]
    return report
