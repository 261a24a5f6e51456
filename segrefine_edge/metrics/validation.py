"""The one validation scorer: region and boundary scores of predicted labels against masks,
used by the segmenter's per-epoch check, the refiner's per-step check and `convert`'s check,
so that all three report the same numbers for the same labels."""

from __future__ import annotations

import numpy as np

from segrefine_edge.metrics.boundary import BoundaryScores
from segrefine_edge.metrics.confusion import ConfusionMatrix


class SplitScorer:
    """Accumulates mIoU, per-class IoU and (with ``boundary``) mean Boundary F over a split.

    ``void`` labels in a mask count nowhere. Boundary F costs a distance transform per image,
    so a caller that needs only mIoU (every training epoch) can leave it out.
    """

    def __init__(self, num_classes: int, void: int | None, boundary: bool = True) -> None:
        self.confusion = ConfusionMatrix(num_classes, void)
        self.boundary = BoundaryScores(num_classes, void, curve=()) if boundary else None

    def update(self, mask: np.ndarray, labels: np.ndarray) -> None:
        self.confusion.update(mask, labels)
        if self.boundary is not None:
            self.boundary.update(mask, labels)

    def miou(self) -> float:
        return self.confusion.miou()

    def iou(self) -> np.ndarray:
        return self.confusion.iou()

    def boundary_f(self) -> float:
        """Mean Boundary F over the classes seen; NaN when the scorer keeps no boundary scores."""
        return self.boundary.mean_boundary_f() if self.boundary is not None else float("nan")
