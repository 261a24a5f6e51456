"""segrefine-edge: real-time video segmentation for edge devices (a MobileNet-DeepLab segmenter
and a refiner that restores the boundaries it smooths away).

The public API is the pipeline; see segrefine_edge.pipeline for an example.
"""

from segrefine_edge.pipeline import Pipeline, PipelineOptions, SegmentationResult

__all__ = ["Pipeline", "PipelineOptions", "SegmentationResult"]
