"""Segmentation maths: logits to a car mask, IoU and Dice of the car class. Pure numpy."""

import numpy as np


def car_log_odds(logits):
    """float64 log-odds of the car class: the logit (``S x S`` or ``1 x S x S``), or logit1 - logit0
    (``2 x S x S``, milesial master: softmax class 1 = sigmoid(l1 - l0))."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 3 and logits.shape[0] == 1:
        return logits[0]
    if logits.ndim == 3 and logits.shape[0] == 2:
        return logits[1] - logits[0]
    if logits.ndim == 2:
        return logits
    raise ValueError(f"logits of shape {logits.shape}: expected S x S, 1 x S x S or 2 x S x S")


def logits_to_mask(logits):
    """Car mask: log-odds > 0 (sigmoid > 0.5, or class 1 wins the argmax; a tie or NaN is background)."""
    return car_log_odds(logits) > 0


def iou_dice(pred, label):
    """(|P and L| / |P or L|, 2 |P and L| / (|P| + |L|)) of two masks of one shape (non-bool: nonzero
    is true); each 1.0 when both masks are empty."""
    pred = np.asarray(pred).astype(bool, copy=False)
    label = np.asarray(label).astype(bool, copy=False)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    both = int(np.count_nonzero(pred & label))
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(label))
    union = total - both
    return (both / union if union else 1.0), (2.0 * both / total if total else 1.0)


def relative_error(actual, reference):
    """max |actual - reference| / max |reference| (0 when both are all zeros)."""
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    diff = float(np.abs(actual - reference).max()) if reference.size else 0.0
    return diff / scale if scale > 0 else diff
