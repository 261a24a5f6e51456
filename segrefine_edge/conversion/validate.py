"""Validate a conversion: score the float Keras model and the converted TFLite model on the
same labelled images, with the project's metrics and the runtime's own frame path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np

from segrefine_edge.bench import measure
from segrefine_edge.conversion.quantize import Progress
from segrefine_edge.datasets import DatasetClasses, find_pairs, read_pair
from segrefine_edge.metrics import SplitScorer
from segrefine_edge.postprocess import labels_at
from segrefine_edge.preprocess import resize_image
from segrefine_edge.scores import ScoreMap
from segrefine_edge.segmenter import Segmenter


@dataclass
class Scores:
    miou: float
    boundary_f: float


@dataclass
class Validation:
    images: int
    reference: Scores
    converted: Scores
    agreement: float
    invoke_ms: float

    @property
    def miou_drop(self) -> float:
        return self.reference.miou - self.converted.miou

    def to_json(self) -> dict:
        return {"images": self.images, "float_miou": round(self.reference.miou, 4),
                "float_boundary_f": round(self.reference.boundary_f, 4), "miou": round(self.converted.miou, 4),
                "boundary_f": round(self.converted.boundary_f, 4), "miou_drop": round(self.miou_drop, 4),
                "pixel_agreement_with_float": round(self.agreement, 4), "invoke_ms_p50": round(self.invoke_ms, 2)}


def validate(model: keras.Model, tflite_path: Path, data: str | Path, split: str, count: int,
             classes: DatasetClasses, threads: int = 2, progress: Progress | None = None) -> Validation:
    """Both models on the first ``count`` images of ``split``; labels at the mask's size."""
    pairs = find_pairs(data, split)[:count]
    segmenter = Segmenter.open(tflite_path, threads=threads)
    scorers = [SplitScorer(len(classes.names), classes.void) for _ in ("reference", "converted")]
    agree = total = 0
    for done, pair in enumerate(pairs, 1):
        if progress is not None:
            progress("validating", done, len(pairs))
        image, mask = read_pair(pair, classes)
        size = (mask.shape[1], mask.shape[0])
        rgb = cv2.cvtColor(resize_image(image, segmenter.contract.input_hw),
                           cv2.COLOR_BGR2RGB).astype(np.float32)
        reference = labels_at(ScoreMap("logits", np.asarray(model(rgb[None], training=False))[0]), size)
        converted = segmenter.segment(image)
        for scorer, labels in zip(scorers, (reference, converted), strict=True):
            scorer.update(mask, labels)
        agree += int((reference == converted).sum())
        total += reference.size
    invoke = measure([segmenter.backend], warmup=3, runs=20)[0]
    reference_scores, converted_scores = (Scores(s.miou(), s.boundary_f()) for s in scorers)
    return Validation(len(pairs), reference_scores, converted_scores, agree / max(total, 1), invoke.median_ms)
