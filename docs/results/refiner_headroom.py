"""How much a boundary refiner could gain on the drives protocol runs left out, if it were perfect.

Kept as the record behind docs/experiments.md "2026-12-07: the headroom a boundary refiner has on
drives never seen". Oracles, not models: each replaces the segmenter's labels by the truth, at the
refiner's 176x240, within a band around the segmenter's own boundaries (what a refiner that moves
boundaries by up to that many pixels could reach), or everywhere (what any 176x240 output could
reach), and SegFix given the truth's boundaries and directions. Scored as refiner_gates.py scores
(the same runs, the same "segmenter" figures):

    python docs/results/refiner_headroom.py /tmp/rfull/rs0_*_s? --json docs/results/2026-12-07-refiner-headroom.json
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from refiner_gates import Frame, main

_SURE = 20.0   # logits of an oracle's labels: far beyond any the segmenter gives, so resizing keeps them


def _one_hot_logits(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.where(np.eye(num_classes, dtype=bool)[labels], _SURE, -_SURE).astype(np.float32)


def _truth_within(band_px: int | None) -> Callable[[Frame], np.ndarray]:
    """The truth within ``band_px`` pixels (at 176x240) of the segmenter's boundaries, or everywhere
    (None); the segmenter's labels elsewhere and on void."""
    def oracle(frame: Frame) -> np.ndarray:
        num_classes = frame.base.shape[-1]
        labels = frame.base.argmax(-1).astype(np.uint8)
        known = frame.truth < num_classes
        if band_px is not None:
            square = np.ones((3, 3), np.uint8)
            edges = cv2.dilate(labels, square) != cv2.erode(labels, square)
            disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band_px + 1, 2 * band_px + 1))
            known &= cv2.dilate(edges.astype(np.uint8), disk) > 0
        return _one_hot_logits(np.where(known, frame.truth, labels), num_classes)
    return oracle


def _inward_offsets(truth: np.ndarray, num_classes: int, band_px: int, reach_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel within ``band_px`` of a boundary of the truth, the (dy, dx) of ``reach_px`` pixels
    into its own region, along the gradient of its distance to the region's edge; 0 elsewhere."""
    dy = np.zeros(truth.shape, np.int32)
    dx = np.zeros(truth.shape, np.int32)
    for cls in np.unique(truth):
        if cls >= num_classes:
            continue
        region = (truth == cls).astype(np.uint8)
        inside = cv2.distanceTransform(cv2.copyMakeBorder(region, 1, 1, 1, 1, cv2.BORDER_REPLICATE),
                                       cv2.DIST_L2, 5)[1:-1, 1:-1]
        gy, gx = cv2.Sobel(inside, cv2.CV_32F, 0, 1), cv2.Sobel(inside, cv2.CV_32F, 1, 0)
        norm = np.hypot(gy, gx) + 1e-6
        near = (region > 0) & (inside <= band_px)
        dy[near] = np.rint(reach_px * gy[near] / norm[near]).astype(np.int32)
        dx[near] = np.rint(reach_px * gx[near] / norm[near]).astype(np.int32)
    return dy, dx


def _segfix(band_px: int, reach_px: int) -> Callable[[Frame], np.ndarray]:
    """SegFix (Yuan et al., 2020) given the truth's boundaries and directions: each pixel near a true
    boundary takes the segmenter's label ``reach_px`` pixels inside its true region. The most a
    class-agnostic boundary-offset model could do with the segmenter's own labels."""
    def oracle(frame: Frame) -> np.ndarray:
        num_classes = frame.base.shape[-1]
        labels = frame.base.argmax(-1)
        dy, dx = _inward_offsets(frame.truth, num_classes, band_px, reach_px)
        h, w = labels.shape
        ys, xs = np.mgrid[0:h, 0:w]
        moved = labels[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)]
        return _one_hot_logits(moved, num_classes)
    return oracle


ORACLES: dict[str, Callable[[Frame], np.ndarray]] = {
    "segmenter": lambda f: f.logits,
    "refined": lambda f: f.refined,
    **{f"truth within {k} px of the segmenter's boundaries": _truth_within(k) for k in (1, 2, 4, 8, 16)},
    "truth everywhere (at 176x240)": _truth_within(None),
    **{f"SegFix with the truth's directions: band {band} px, reach {reach} px": _segfix(band, reach)
       for band, reach in ((1, 2), (2, 3), (2, 4), (3, 5))},
}


if __name__ == "__main__":
    main(__doc__.splitlines()[0], ORACLES)
