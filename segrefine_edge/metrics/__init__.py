"""Segmentation metrics in numpy and OpenCV: region (confusion matrix), boundary, temporal."""

from segrefine_edge.metrics.confusion import ConfusionMatrix

__all__ = ["ConfusionMatrix"]
