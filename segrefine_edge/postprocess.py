"""Post-processing: a model's scores to class labels at the frame's size."""

from __future__ import annotations

import cv2
import numpy as np

from segrefine_edge.quant import as_uint8
from segrefine_edge.scores import ScoreMap


def labels_at(scores: ScoreMap, size_wh: tuple[int, int]) -> np.ndarray:
    """Class labels (uint8 HxW, or uint16 with >255 classes) at ``size_wh``.

    Scores are upsampled bilinearly before the argmax (sharper than upsampling labels);
    argmax-only models are upsampled with nearest neighbour.
    """
    w, h = size_wh
    if scores.kind == "labels":
        labels = scores.values.astype(np.uint16 if scores.values.max(initial=0) > 255 else np.uint8)
        if labels.shape[:2] != (h, w):
            labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        return labels
    values, zero_point = as_uint8(scores.values, scores.zero_point)
    if scores.kind == "sigmoid":
        if values.shape[:2] != (h, w):
            values = cv2.resize(values, (w, h), interpolation=cv2.INTER_LINEAR)
        threshold = 0.5 / scores.scale + zero_point if scores.scale else 0.5
        return (values > threshold).astype(np.uint8)
    return _upsampled_argmax(values, (w, h))


def _upsampled_argmax(values: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """argmax over channels of the bilinearly upsampled HxWxC scores, one channel at a time.

    Resizing contiguous planes and keeping a running maximum is about 5x faster than resizing
    the interleaved HxWxC array and calling np.argmax on its last axis (30 -> 6 ms for 11
    classes to 768x576 on the build machine), and gives the same labels (ties go to the lower
    class in both). The comparisons run in OpenCV (vectorised, no boolean index arrays).
    """
    w, h = size_wh
    planes = np.ascontiguousarray(np.moveaxis(values, -1, 0))
    labels = np.zeros((h, w), np.uint8 if len(planes) <= 256 else np.uint16)
    best = cv2.resize(planes[0], (w, h), interpolation=cv2.INTER_LINEAR)
    fill, wins = np.empty_like(labels), np.empty((h, w), np.uint8)
    for index in range(1, len(planes)):
        plane = cv2.resize(planes[index], (w, h), interpolation=cv2.INTER_LINEAR)
        cv2.compare(plane, best, cv2.CMP_GT, dst=wins)
        fill.fill(index)
        cv2.copyTo(fill, wins, labels)
        cv2.max(best, plane, dst=best)
    return labels


def classes_in(labels: np.ndarray) -> np.ndarray:
    """The class indices that label at least one pixel, ascending (for legends, review sheets and
    one annotation per class). OpenCV's histogram counts uint8 labels 2-3x faster than bincount."""
    if labels.dtype == np.uint8:
        counts = cv2.calcHist([labels], [0], None, [256], [0, 256]).ravel()
    else:
        counts = np.bincount(labels.ravel(), minlength=1)
    return np.flatnonzero(counts)
