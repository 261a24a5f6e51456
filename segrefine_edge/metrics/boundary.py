"""Boundary accuracy: Boundary F (DAVIS definition) and Boundary IoU (Cheng et al. 2021).

Both are computed per class on binary masks. Pixels whose ground truth is void are removed
from both the truth and the prediction, so a model is neither rewarded nor punished for
edges it draws inside unlabelled regions.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

BF_TOLERANCE = 0.008
BIOU_DILATION = 0.02
CURVE_TOLERANCES = (0.002, 0.004, 0.008, 0.016, 0.032)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def tolerance_pixels(shape: tuple[int, ...], fraction: float) -> int:
    """DAVIS rounds the tolerance up: ceil(fraction x diagonal), at least one pixel."""
    return max(1, math.ceil(fraction * math.hypot(shape[0], shape[1])))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a binary mask, as DAVIS' seg2bmap for same-size output.

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour; the last row and column compare with themselves (no image-border edges).
    """
    m = mask.astype(bool)
    east = np.zeros_like(m)
    south = np.zeros_like(m)
    southeast = np.zeros_like(m)
    east[:, :-1] = m[:, :-1] ^ m[:, 1:]
    south[:-1, :] = m[:-1, :] ^ m[1:, :]
    southeast[:-1, :-1] = m[:-1, :-1] ^ m[1:, 1:]
    return east | south | southeast


def boundary_f(truth: np.ndarray, pred: np.ndarray, valid: np.ndarray | None = None,
               tolerance: float = BF_TOLERANCE) -> tuple[float, float, float]:
    """(F, precision, recall) of ``pred``'s boundary against ``truth``'s for one binary mask.

    Both boundaries empty scores 1 (nothing to find, nothing drawn); one empty scores 0.
    """
    return boundary_f_at(truth, pred, valid, (tolerance,))[0]


def boundary_f_at(truth: np.ndarray, pred: np.ndarray, valid: np.ndarray | None,
                  tolerances: tuple[float, ...]) -> list[tuple[float, float, float]]:
    """``boundary_f`` at several tolerances, extracting the boundaries once."""
    gt_b = boundary_map(truth)
    pr_b = boundary_map(pred)
    if valid is not None:
        gt_b &= valid
        pr_b &= valid
    n_gt, n_pr = int(gt_b.sum()), int(pr_b.sum())
    if n_gt == 0 and n_pr == 0:
        return [(1.0, 1.0, 1.0)] * len(tolerances)
    if n_gt == 0 or n_pr == 0:
        return [(0.0, float(n_pr == 0), float(n_gt == 0))] * len(tolerances)
    scores = []
    for tolerance in tolerances:
        disk = _disk(tolerance_pixels(truth.shape, tolerance))
        gt_near = cv2.dilate(gt_b.view(np.uint8), disk).astype(bool)
        pr_near = cv2.dilate(pr_b.view(np.uint8), disk).astype(bool)
        precision = float((pr_b & gt_near).sum()) / n_pr
        recall = float((gt_b & pr_near).sum()) / n_gt
        f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        scores.append((f, precision, recall))
    return scores


def inner_boundary(mask: np.ndarray, dilation: int) -> np.ndarray:
    """Pixels of ``mask`` within ``dilation`` pixels of its contour (image edges count as
    contour, as in the reference implementation, which pads with zeros before eroding)."""
    m = mask.astype(np.uint8)
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=dilation)[1:-1, 1:-1]
    return (m - eroded).astype(bool)


class BoundaryScores:
    """Accumulates Boundary F (per class, averaged over the images that contain the class)
    and Boundary IoU (per class, intersections and unions summed over the split).

    Boundary F is also kept at the ``curve`` tolerances, to plot it against the tolerance.
    """

    def __init__(self, num_classes: int, void: int | None = None, bf_tolerance: float = BF_TOLERANCE,
                 biou_dilation: float = BIOU_DILATION, curve: tuple[float, ...] = CURVE_TOLERANCES) -> None:
        self.num_classes = num_classes
        self.void = void
        self.tolerances = (bf_tolerance, *(t for t in curve if t != bf_tolerance))
        self.biou_dilation = biou_dilation
        self.f_sum = np.zeros((len(self.tolerances), num_classes))
        self.f_count = np.zeros(num_classes, dtype=np.int64)
        self.b_inter = np.zeros(num_classes, dtype=np.int64)
        self.b_union = np.zeros(num_classes, dtype=np.int64)

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        if truth.shape != pred.shape:
            raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
        valid = (truth >= 0) & (truth < self.num_classes)
        if self.void is not None:
            valid &= truth != self.void
        d = tolerance_pixels(truth.shape, self.biou_dilation)
        for c in np.unique(truth[valid]):
            t = (truth == c) & valid
            p = (pred == c) & valid
            self.f_sum[:, c] += [f for f, _, _ in boundary_f_at(t, p, valid, self.tolerances)]
            self.f_count[c] += 1
        for c in np.union1d(np.unique(truth[valid]), np.unique(pred[valid])):
            if c >= self.num_classes:
                continue
            tb = inner_boundary(truth == c, d) & valid
            pb = inner_boundary(pred == c, d) & valid
            self.b_inter[c] += int((tb & pb).sum())
            self.b_union[c] += int((tb | pb).sum())

    def boundary_f_per_class(self, tolerance_index: int = 0) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.f_count > 0, self.f_sum[tolerance_index] / np.maximum(self.f_count, 1), np.nan)

    def boundary_f_curve(self) -> list[tuple[float, float]]:
        """(tolerance, mean Boundary F) in increasing tolerance."""
        return sorted((t, _nanmean(self.boundary_f_per_class(i))) for i, t in enumerate(self.tolerances))

    def boundary_iou_per_class(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.b_union > 0, self.b_inter / np.maximum(self.b_union, 1), np.nan)

    def mean_boundary_f(self) -> float:
        return _nanmean(self.boundary_f_per_class())

    def mean_boundary_iou(self) -> float:
        return _nanmean(self.boundary_iou_per_class())


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
