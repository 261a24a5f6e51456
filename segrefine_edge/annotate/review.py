"""Which frames need a human: the share of pixels the model is unsure of, per frame.

A pixel is uncertain when its top class has probability below LOW_CONFIDENCE, or beats the
runner-up by less than SMALL_MARGIN. Frames are ranked by that share in ``review.csv``, most
uncertain first, so annotators start where a first draft is weakest.
"""

from __future__ import annotations

import csv
import io

import numpy as np

from segrefine_edge.pipeline import SegmentationResult
from segrefine_edge.postprocess import classes_in

LOW_CONFIDENCE = 0.5
SMALL_MARGIN = 0.1


def uncertain_share(result: SegmentationResult) -> float:
    """Share (0-1) of model-resolution pixels that are uncertain; 0 for a labels-only model."""
    if result.scores.kind == "labels":
        return 0.0
    probabilities = result.scores.probabilities()
    if result.scores.kind == "sigmoid":                 # foreground probability: two classes
        probabilities = np.stack([1.0 - probabilities, probabilities], axis=-1)
    top2 = np.partition(probabilities, -2, axis=-1)[..., -2:]
    top, second = top2[..., 1], top2[..., 0]
    return float(np.mean((top < LOW_CONFIDENCE) | (top - second < SMALL_MARGIN)))


def classes_present(labels: np.ndarray, names: list[str]) -> list[str]:
    return [names[i] if i < len(names) else f"class {i}" for i in classes_in(labels)]


def review_csv(records: list[dict]) -> str:
    """The frames ranked from most to least uncertain (ties in video and frame order)."""
    ranked = sorted(records, key=lambda r: (-r["uncertain_share"], r["video"], r["frame"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "video", "frame", "time_s", "uncertain_share", "classes"])
    for rank, record in enumerate(ranked, 1):
        writer.writerow([rank, record["video"], record["frame"], f"{record['time']:.3f}",
                         f"{record['uncertain_share']:.4f}", ";".join(record["classes"])])
    return out.getvalue()
