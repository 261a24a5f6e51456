"""Segmentation metrics (numpy and OpenCV only): region, boundary and temporal."""

from segrefine_edge.metrics.boundary import BoundaryScores, boundary_f, boundary_map, inner_boundary
from segrefine_edge.metrics.confusion import ConfusionMatrix
from segrefine_edge.metrics.temporal import TemporalScores, pair_iou
from segrefine_edge.metrics.validation import SplitScorer

__all__ = ["BoundaryScores", "ConfusionMatrix", "SplitScorer", "TemporalScores", "boundary_f", "boundary_map",
           "inner_boundary", "pair_iou"]
