"""IoU, Dice and thresholding against hand-computed cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from unet_infer.metrics import iou_dice, logits_to_mask


def iou(pred, label):
    return iou_dice(pred, label)[0]


def dice(pred, label):
    return iou_dice(pred, label)[1]

PRED = np.array([[1, 1, 0, 0],
                 [0, 1, 0, 0],
                 [0, 0, 0, 1]], dtype=bool)
LABEL = np.array([[1, 0, 0, 0],
                  [1, 1, 0, 0],
                  [0, 0, 0, 0]], dtype=bool)
# |P| = 4, |L| = 3, |P and L| = 2, |P or L| = 5


def test_hand_computed():
    assert iou(PRED, LABEL) == pytest.approx(2 / 5)
    assert dice(PRED, LABEL) == pytest.approx(2 * 2 / (4 + 3))
    assert iou_dice(PRED, LABEL) == (iou(PRED, LABEL), dice(PRED, LABEL))
    assert iou(LABEL, PRED) == iou(PRED, LABEL)


def test_identical_disjoint_and_empty():
    assert iou(PRED, PRED) == dice(PRED, PRED) == 1.0
    assert iou(PRED, ~PRED) == dice(PRED, ~PRED) == 0.0
    empty = np.zeros((3, 4), dtype=bool)
    assert iou(empty, empty) == dice(empty, empty) == 1.0
    assert iou(empty, LABEL) == dice(empty, LABEL) == 0.0
    assert iou(PRED, empty) == dice(PRED, empty) == 0.0


def test_non_bool_inputs_count_nonzero():
    assert iou(PRED.astype(np.uint8), LABEL.astype(np.float32)) == pytest.approx(2 / 5)
    assert iou([[1, 0]], [[1, 1]]) == 0.5


def test_shape_mismatch_is_a_value_error():
    with pytest.raises(ValueError, match="shape"):
        iou(PRED, LABEL[:2])
    with pytest.raises(ValueError, match="shape"):
        dice(PRED, LABEL.T)


def test_logits_to_mask_one_class():
    logits = np.array([[-1.0, 0.0, 1e-30], [2.0, -0.0, np.nan]], dtype=np.float32)
    expected = np.array([[False, False, True], [True, False, False]])
    assert np.array_equal(logits_to_mask(logits), expected)
    assert np.array_equal(logits_to_mask(logits[None]), expected)


def test_logits_to_mask_two_classes_is_argmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 16, 16)).astype(np.float32)
    logits[:, 0, 0] = 0.5  # a tie goes to class 0, as argmax does
    logits[:, 0, 1] = [-np.inf, np.inf]
    logits[:, 0, 2] = [np.inf, np.inf]  # a tie
    logits[:, 0, 3] = [0.0, np.float32(1e-45)]  # the smallest float32 above 0 still wins
    logits[:, 0, 4] = [3e38, -3e38]
    mask = logits_to_mask(logits)
    assert np.array_equal(mask, np.argmax(logits, axis=0) == 1)
    assert not mask[0, 0] and mask[0, 1] and not mask[0, 2] and mask[0, 3] and not mask[0, 4]


@pytest.mark.parametrize("shape", [(3, 4, 4), (4,), (1, 1, 4, 4), (2, 2, 4, 4)])
def test_logits_of_other_shapes_refused(shape):
    with pytest.raises(ValueError, match="logits of shape"):
        logits_to_mask(np.zeros(shape, dtype=np.float32))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(
    arrays(bool, (n, n)), arrays(bool, (n, n)))))
def test_against_a_set_definition(masks):
    pred, label = masks
    p = {i for i, v in enumerate(pred.ravel()) if v}
    q = {i for i, v in enumerate(label.ravel()) if v}
    expected_iou = len(p & q) / len(p | q) if p | q else 1.0
    expected_dice = 2 * len(p & q) / (len(p) + len(q)) if p or q else 1.0
    assert iou(pred, label) == pytest.approx(expected_iou)
    assert dice(pred, label) == pytest.approx(expected_dice)
    # Dice and IoU are tied: D = 2 J / (1 + J)
    j = iou(pred, label)
    assert dice(pred, label) == pytest.approx(2 * j / (1 + j))
