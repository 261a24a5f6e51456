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
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._prev_gray: np.ndarray | None = None
        self._prev_labels: np.ndarray | None = None
        self.tc_values: list[float] = []
        self.flicker_values: list[float] = []

    def reset(self) -> None:
        """Start a new sequence (no pair is formed across the break)."""
        self._prev_gray = None
        self._prev_labels = None

    def update(self, frame_bgr: np.ndarray, labels: np.ndarray) -> None:
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        if gray.shape != labels.shape:
            gray = cv2.resize(gray, (labels.shape[1], labels.shape[0]), interpolation=cv2.INTER_AREA)
        if self._prev_labels is not None and self._prev_labels.shape == labels.shape:
            warped, inside = warp_labels(self._prev_labels, self._flow.calc(gray, self._prev_gray, None))
            self.tc_values.append(pair_iou(labels, warped, inside))
            self.flicker_values.append(float(np.mean(labels != self._prev_labels)))
        self._prev_gray, self._prev_labels = gray, labels

    def tc(self) -> float:
        return float(np.mean(self.tc_values)) if self.tc_values else float("nan")

    def flicker(self) -> float:
        return float(np.mean(self.flicker_values)) if self.flicker_values else float("nan")


def warp_labels(labels: np.ndarray, flow_to_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pull ``labels`` (frame t-1) to frame t along ``flow_to_prev`` (t -> t-1, per pixel of t).

    Returns the warped labels and the mask of pixels whose source lies inside frame t-1;
    pixels that came from outside the frame have no previous label and are not scored.
    """
    h, w = labels.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = xs + flow_to_prev[..., 0]
    map_y = ys + flow_to_prev[..., 1]
    warped = cv2.remap(labels, map_x, map_y, interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return warped, inside
