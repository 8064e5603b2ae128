"""Segmentation maths: logits to a car mask, IoU and Dice of the car class. Pure numpy."""

import numpy as np


def logits_to_mask(logits):
    """Car mask (bool, S x S) from the model's logits.

    ``S x S`` or ``1 x S x S``: logit > 0, i.e. sigmoid(logit) > 0.5 (exact in real numbers;
    float32 sigmoid rounds |logit| < 6e-8 to 0.5, which changes nothing in practice).
    ``2 x S x S`` (milesial master): argmax over the classes is class 1, i.e. logit1 > logit0
    (a tie goes to class 0, as ``argmax`` does). NaN logits count as background.
    """
    logits = np.asarray(logits)
    if logits.ndim == 3 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.ndim == 2:
        return logits > 0
    if logits.ndim == 3 and logits.shape[0] == 2:
        return logits[1] > logits[0]
    raise ValueError(f"logits of shape {logits.shape}: expected S x S, 1 x S x S or 2 x S x S")


def _counts(pred, label):
    """(|P and L|, |P|, |L|) of two boolean masks of one shape (non-bool: nonzero is true)."""
    pred = np.asarray(pred).astype(bool, copy=False)
    label = np.asarray(label).astype(bool, copy=False)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    return (int(np.count_nonzero(pred & label)), int(np.count_nonzero(pred)),
            int(np.count_nonzero(label)))


def _iou(both, n_pred, n_label):
    union = n_pred + n_label - both
    return both / union if union else 1.0


def _dice(both, n_pred, n_label):
    total = n_pred + n_label
    return 2.0 * both / total if total else 1.0


def iou(pred, label):
    """|P and L| / |P or L|; 1.0 when both masks are empty."""
    return _iou(*_counts(pred, label))


def dice(pred, label):
    """2 |P and L| / (|P| + |L|); 1.0 when both masks are empty."""
    return _dice(*_counts(pred, label))


def iou_dice(pred, label):
    """``(iou(pred, label), dice(pred, label))`` from one pass over the masks."""
    counts = _counts(pred, label)
    return _iou(*counts), _dice(*counts)


def relative_error(actual, reference):
    """max |actual - reference| / max |reference| (0 when both are all zeros)."""
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    diff = float(np.abs(actual - reference).max()) if reference.size else 0.0
    return diff / scale if scale > 0 else diff
