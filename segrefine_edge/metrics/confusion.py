"""A streaming confusion matrix over a whole split: mIoU, per-class IoU, pixel accuracy, FWIoU."""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Accumulate ``counts[true, pred]`` over many images; void pixels never count.

    Labels outside ``[0, num_classes)`` in the ground truth are treated as void (that is how
    CamVid's void 11 and VOC's 255 are ignored). A prediction outside that range means "none
    of these classes" (a model class with no counterpart under a class map): it is a miss for
    the true class and a false positive for no class, kept in an extra last column.
    """

    def __init__(self, num_classes: int, void: int | None = None) -> None:
        self.num_classes = num_classes
        self.void = void
        self.counts = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """Add one image (or batch) of integer labels; shapes must match."""
        if truth.shape != pred.shape:
            raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
        t = truth.reshape(-1).astype(np.int64)
        p = pred.reshape(-1).astype(np.int64)
        keep = (t >= 0) & (t < self.num_classes)
        if self.void is not None:
            keep &= t != self.void
        t, p = t[keep], p[keep]
        n = self.num_classes
        p = np.where((p < 0) | (p >= n), n, p)
        self.counts += np.bincount(t * (n + 1) + p, minlength=n * (n + 1)).reshape(n, n + 1)

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for a class absent from both truth and prediction."""
        tp = np.diag(self.counts).astype(np.float64)
        denom = self.counts[:, : self.num_classes].sum(0) + self.counts.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self) -> float:
        """Mean IoU over the classes present in truth or prediction."""
        iou = self.iou()
        return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.counts.sum()
        return float(np.trace(self.counts) / total) if total else float("nan")

    def frequency_weighted_iou(self) -> float:
        """IoU weighted by each class's share of ground-truth pixels."""
        if not self.counts.sum():
            return float("nan")
        freq = self.counts.sum(1) / self.counts.sum()
        iou = np.nan_to_num(self.iou())
        return float((freq * iou).sum())
