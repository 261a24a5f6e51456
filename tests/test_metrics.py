"""Metrics against hand-computed cases, and their invariants as properties."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segrefine_edge.metrics import (
    BoundaryScores,
    ConfusionMatrix,
    TemporalScores,
    boundary_f,
    boundary_map,
    inner_boundary,
    pair_iou,
)
from segrefine_edge.motion import pull_back

labels_2d = arrays(np.uint8, st.tuples(st.integers(4, 24), st.integers(4, 24)), elements=st.integers(0, 3))
label_pairs = st.tuples(st.integers(4, 24), st.integers(4, 24)).flatmap(
    lambda shape: st.tuples(*(arrays(np.uint8, shape, elements=st.integers(0, 3)),) * 2))


def test_confusion_matrix_by_hand():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 9]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 0, 0]])
    cm = ConfusionMatrix(2, void=9)
    cm.update(truth, pred)
    # class 0: tp 3, fp 1 (the 1 predicted 0), fn 1 -> 3/5; class 1: tp 2, fp 1, fn 1 -> 2/4
    np.testing.assert_allclose(cm.iou(), [3 / 5, 2 / 4])
    assert cm.miou() == pytest.approx(0.55)
    assert cm.pixel_accuracy() == pytest.approx(5 / 7)
    assert cm.frequency_weighted_iou() == pytest.approx(4 / 7 * 3 / 5 + 3 / 7 * 2 / 4)


def test_prediction_outside_the_classes_is_a_miss_and_no_false_positive():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 0, 1, 1]), np.array([0, 7, 1, 1]))
    np.testing.assert_allclose(cm.iou(), [1 / 2, 1.0])


@given(label_pairs)
def test_perfect_prediction_scores_one_and_void_never_counts(pair):
    truth, noise = pair
    cm = ConfusionMatrix(3, void=3)
    cm.update(truth, np.where(truth == 3, noise, truth))
    present = np.unique(truth[truth != 3])
    if present.size:
        assert cm.miou() == pytest.approx(1.0)
        assert cm.counts.sum() == np.count_nonzero(truth != 3)


@given(label_pairs, st.permutations(range(4)))
def test_permuting_labels_in_both_changes_nothing(pair, perm):
    truth, pred = pair
    perm = np.asarray(perm, np.uint8)
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(truth, pred)
    b.update(perm[truth], perm[pred])
    assert a.miou() == pytest.approx(b.miou())
    assert sorted(np.nan_to_num(a.iou())) == pytest.approx(sorted(np.nan_to_num(b.iou())))


def test_boundary_map_is_one_pixel_on_each_side_of_a_step():
    mask = np.zeros((6, 6), bool)
    mask[:, 3:] = True
    b = boundary_map(mask)
    assert b[:, 2].all() and b.sum() == 6


def test_boundary_f_by_hand_with_a_shifted_edge():
    truth = np.zeros((100, 100), bool)
    truth[:, 50:] = True
    near = np.zeros_like(truth)
    near[:, 53:] = True     # 3 px off: outside the ceil(0.008 * 141.4) = 2 px tolerance
    far = np.zeros_like(truth)
    far[:, 51:] = True      # 1 px off: inside the 2 px tolerance
    assert boundary_f(truth, far)[0] == 1.0
    f, precision, recall = boundary_f(truth, near)
    assert f == 0.0 and precision == 0.0 and recall == 0.0
    assert boundary_f(truth, near, tolerance=0.03)[0] == 1.0


def test_boundary_f_empty_cases():
    empty = np.zeros((10, 10), bool)
    full = np.ones((10, 10), bool)
    some = np.zeros((10, 10), bool)
    some[2:5, 2:5] = True
    assert boundary_f(empty, full)[0] == 1.0          # no boundary in either
    assert boundary_f(some, empty)[0] == 0.0
    assert boundary_f(empty, some)[0] == 0.0


def test_boundary_f_ignores_edges_drawn_inside_void():
    truth = np.zeros((40, 40), np.uint8)
    truth[:, 20:] = 1
    truth[:5, :] = 9                                   # void strip along the top
    pred = truth.copy()
    pred[:5, :] = np.arange(40)[None, :] % 2          # noise inside the void
    scores = BoundaryScores(2, void=9)
    scores.update(truth, pred)
    assert scores.mean_boundary_f() == pytest.approx(1.0)
    assert scores.mean_boundary_iou() == pytest.approx(1.0)


def test_inner_boundary_band_width_and_image_edges():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    band = inner_boundary(mask, 2)
    assert band.sum() == 100 - 36                      # 10x10 square minus its 6x6 core
    assert inner_boundary(np.ones((8, 8), bool), 1).sum() == 28   # image edges are contour


def test_boundary_iou_by_hand():
    truth = np.zeros((50, 50), np.uint8)
    truth[10:40, 10:40] = 1
    pred = np.zeros_like(truth)
    pred[10:40, 12:40] = 1
    scores = BoundaryScores(2)
    scores.update(truth, pred)
    d = math.ceil(0.02 * math.hypot(50, 50))
    tb, pb = inner_boundary(truth == 1, d), inner_boundary(pred == 1, d)
    assert scores.boundary_iou_per_class()[1] == pytest.approx((tb & pb).sum() / (tb | pb).sum())
    assert 0.5 < scores.boundary_iou_per_class()[1] < 1.0


@settings(max_examples=30)
@given(labels_2d)
def test_identical_predictions_score_one_on_boundaries(truth):
    scores = BoundaryScores(4)
    scores.update(truth, truth)
    assert scores.mean_boundary_f() == pytest.approx(1.0)
    assert scores.mean_boundary_iou() == pytest.approx(1.0)


def test_pair_iou_by_hand():
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 1, 1, 1])
    assert pair_iou(a, b) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_warp_follows_the_flow():
    labels = np.zeros((10, 10), np.uint8)
    labels[:, :5] = 1
    flow = np.zeros((10, 10, 2), np.float32)
    flow[..., 0] = -2.0                                # every pixel of t came from 2 px to its left
    warped, inside = pull_back(labels, flow)
    assert (warped[:, :7] == 1).all() and (warped[:, 7:] == 0).all()
    assert not inside[:, :2].any() and inside[:, 2:].all()
    probs = np.stack([1.0 - labels, labels], axis=-1).astype(np.float32)     # maps with channels move alike
    moved, _ = pull_back(probs, flow, cv2.INTER_LINEAR)
    assert moved.shape == probs.shape and np.array_equal(moved.argmax(-1), warped)


def test_temporal_scores_on_a_moving_square():
    """A textured square moving right, labelled exactly: flow warps it onto itself, so TC is
    near 1 while the unwarped flicker is the share of pixels the motion uncovered."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (40, 40, 3), np.uint8)
    temporal = TemporalScores()
    for step in range(4):
        frame = np.full((120, 160, 3), 90, np.uint8)
        labels = np.zeros((120, 160), np.uint8)
        x = 30 + 4 * step
        frame[40:80, x:x + 40] = texture
        labels[40:80, x:x + 40] = 1
        temporal.update(frame, labels)
    assert len(temporal.tc_values) == 3
    assert temporal.tc() > 0.9
    assert temporal.flicker() == pytest.approx(2 * 4 * 40 / (120 * 160))


def test_an_empty_matrix_scores_nothing_rather_than_zero():
    cm = ConfusionMatrix(3)
    assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy()) and math.isnan(cm.frequency_weighted_iou())


def test_the_one_validation_scorer_agrees_with_the_metrics_it_wraps():
    from segrefine_edge.metrics import BoundaryScores, ConfusionMatrix, SplitScorer

    rng = np.random.default_rng(4)
    mask = np.zeros((40, 60), np.uint8)
    mask[:, 30:] = 1
    mask[:3] = 255
    labels = mask.copy()
    labels[10:20, 25:35] = 2
    labels[mask == 255] = rng.integers(0, 3, int((mask == 255).sum()))
    scorer, light = SplitScorer(3, 255), SplitScorer(3, 255, boundary=False)
    cm, bf = ConfusionMatrix(3, 255), BoundaryScores(3, 255, curve=())
    for s in (scorer, light):
        s.update(mask, labels)
    cm.update(mask, labels)
    bf.update(mask, labels)
    assert scorer.miou() == light.miou() == cm.miou() < 1.0
    assert scorer.boundary_f() == bf.mean_boundary_f() < 1.0
    assert np.isnan(light.boundary_f())
