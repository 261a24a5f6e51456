"""Temporal consistency of predictions on a video: TC (Liu et al. 2020) and flicker rate.

TC is the mean, over consecutive frame pairs, of the IoU between the prediction at t and the
prediction at t-1 warped to t with dense optical flow (OpenCV DIS, medium preset). Warping
takes camera and object motion out, so what is left is the model changing its mind.
Flicker is the share of pixels whose label changes between consecutive frames, unwarped:
cruder, but what a viewer sees.
"""

from __future__ import annotations

import cv2
import numpy as np

from segrefine_edge.motion import FlowTracker, pull_back


def pair_iou(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean IoU over the classes present in either labelling (1.0 when both are empty)."""
    if valid is not None:
        a, b = a[valid], b[valid]
    classes = np.union1d(np.unique(a), np.unique(b))
    if classes.size == 0:
        return 1.0
    ious = [np.logical_and(a == c, b == c).sum() / np.logical_or(a == c, b == c).sum() for c in classes]
    return float(np.mean(ious))


class TemporalScores:
    """Feed frames in order with ``update(frame_bgr, labels)``; read ``tc()`` and ``flicker()``."""

    def __init__(self) -> None:
        self._flow = FlowTracker()
        self._prev_labels: np.ndarray | None = None
        self.tc_values: list[float] = []
        self.flicker_values: list[float] = []

    def reset(self) -> None:
        """Start a new sequence (no pair is formed across the break)."""
        self._flow.reset()
        self._prev_labels = None

    def update(self, frame_bgr: np.ndarray, labels: np.ndarray) -> None:
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        if gray.shape != labels.shape:
            gray = cv2.resize(gray, (labels.shape[1], labels.shape[0]), interpolation=cv2.INTER_AREA)
        flow = self._flow.flow_to_previous(gray)
        if flow is not None and self._prev_labels is not None and self._prev_labels.shape == labels.shape:
            warped, inside = pull_back(self._prev_labels, flow)
            self.tc_values.append(pair_iou(labels, warped, inside))
            self.flicker_values.append(float(np.mean(labels != self._prev_labels)))
        self._prev_labels = labels

    def tc(self) -> float:
        return float(np.mean(self.tc_values)) if self.tc_values else float("nan")

    def flicker(self) -> float:
        return float(np.mean(self.flicker_values)) if self.flicker_values else float("nan")
