"""How much a boundary refiner could gain on the drives protocol runs left out, if it were perfect.

Kept as the record behind docs/experiments.md "2026-12-07: the headroom a boundary refiner has on
drives never seen". Oracles, not models: each replaces the segmenter's labels by the truth, at the
refiner's 176x240, within a band around the segmenter's own boundaries (what a refiner that moves
boundaries by up to that many pixels could reach), or everywhere (what any 176x240 output could
reach). Scored as refiner_gates.py scores (the same runs, the same "segmenter" figures):

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


ORACLES: dict[str, Callable[[Frame], np.ndarray]] = {
    "segmenter": lambda f: f.logits,
    "refined": lambda f: f.refined,
    **{f"truth within {k} px of the segmenter's boundaries": _truth_within(k) for k in (1, 2, 4, 8, 16)},
    "truth everywhere (at 176x240)": _truth_within(None),
}


if __name__ == "__main__":
    main(__doc__.splitlines()[0], ORACLES)
