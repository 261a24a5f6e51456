"""Score models on a labelled split (mIoU, Boundary F, Boundary IoU, latency) and on an
ordered frame sequence (temporal consistency, flicker), all models over the same frames.

Models run through the same Pipeline as `stream`, so what is scored is what users see.
A model trained on other classes is scored through a class map (see segrefine_edge.classmaps).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segrefine_edge.classmaps import NO_CLASS, load_class_map, lookup_table
from segrefine_edge.datasets import DatasetClasses, Pair, read_pair
from segrefine_edge.errors import DatasetError, ModelError
from segrefine_edge.metrics import BoundaryScores, ConfusionMatrix, TemporalScores
from segrefine_edge.pipeline import Pipeline
from segrefine_edge.pngio import write_labels_png
from segrefine_edge.sources import Source
from segrefine_edge.timing import StageTimer


@dataclass
class ModelRun:
    """One column of the results: a pipeline, how its labels map to the dataset's, its scores."""

    name: str
    path: str
    pipeline: Pipeline
    table: np.ndarray | None
    class_map: str | None
    classes: DatasetClasses
    confusion: ConfusionMatrix = field(init=False)
    boundary: BoundaryScores = field(init=False)
    temporal: TemporalScores = field(default_factory=TemporalScores)
    timer: StageTimer = field(default_factory=StageTimer)
    frame_ms: list[float] = field(default_factory=list)
    images: int = 0

    def __post_init__(self) -> None:
        n = len(self.classes.names)
        self.confusion = ConfusionMatrix(n, self.classes.void)
        self.boundary = BoundaryScores(n, self.classes.void)

    def labels(self, image: np.ndarray) -> np.ndarray:
        """Predicted labels at the image's size, in the dataset's label space."""
        start = time.perf_counter()
        result = self.pipeline.segment(image)
        self.frame_ms.append((time.perf_counter() - start) * 1000.0)
        self.timer.add_all(result.timings_ms)
        return result.labels if self.table is None else self.table[result.labels]


def label_table(contract_labels: list[str], classes: DatasetClasses, class_map: str | None,
                model_name: str) -> tuple[np.ndarray | None, str | None]:
    """The lookup that turns a model's labels into the dataset's, or None when they agree.

    A class map applies only to models whose classes differ from the dataset's, so one
    `eval` can score our CamVid model and a Cityscapes peer side by side.
    """
    if not contract_labels or [n.lower() for n in contract_labels] == [n.lower() for n in classes.names]:
        return None, None
    if class_map is None:
        raise ModelError(f"{model_name} predicts {len(contract_labels)} classes ({', '.join(contract_labels[:5])}, "
                         f"...) but the dataset has {len(classes.names)} ({', '.join(classes.names[:5])}, ...); "
                         "pass --class-map FILE (e.g. --class-map cityscapes-camvid)")
    origin, mapping = load_class_map(class_map)
    return lookup_table(mapping, contract_labels, classes.names, origin), origin


def score_split(runs: list[ModelRun], pairs: list[Pair], save_masks: Path | None = None,
                progress: Callable[[Iterable], Iterable] = iter) -> None:
    """Run every model on every pair and accumulate region and boundary scores.

    Pairs go in file order and a temporal refiner carries its mask from one to the next, as
    on video: right for a split that is one sequence (CamVid's val), a handicap otherwise.
    """
    classes = runs[0].classes
    for run in runs:
        run.pipeline.reset()
    for pair in progress(pairs):
        image, mask = read_pair(pair, classes)
        for run in runs:
            labels = run.labels(image)
            pred = np.where(labels == NO_CLASS, len(classes.names), labels) if run.table is not None else labels
            run.confusion.update(mask, pred)
            run.boundary.update(mask, pred)
            run.images += 1
            if save_masks is not None:
                folder = save_masks / run.name if len(runs) > 1 else save_masks
                folder.mkdir(parents=True, exist_ok=True)
                write_labels_png(folder / f"{pair.image.stem}.png", np.minimum(pred, 255).astype(np.uint8),
                                 classes.palette)


def score_sequence(runs: list[ModelRun], source: Source, progress: Callable[[Iterable], Iterable] = iter) -> int:
    """Run every model over the ordered frames of ``source`` for TC and flicker; returns frames read."""
    frames = 0
    for run in runs:
        run.pipeline.reset()
    with source:
        for frame in progress(iter(source.read, None)):
            frames += 1
            for run in runs:
                run.temporal.update(frame.image, run.labels(frame.image))
    if frames < 2:
        raise DatasetError("the sequence has fewer than two frames; temporal consistency needs consecutive frames")
    return frames


def results(run: ModelRun) -> dict:
    """The JSON-ready scores of one model."""
    iou = run.confusion.iou()
    bf = run.boundary.boundary_f_per_class()
    biou = run.boundary.boundary_iou_per_class()
    per_class = {name: {"iou": _num(iou[i]), "boundary_f": _num(bf[i]), "boundary_iou": _num(biou[i])}
                 for i, name in enumerate(run.classes.names)}
    stages = run.timer.summary()["stages"]
    frame_ms = np.asarray(run.frame_ms) if run.frame_ms else np.asarray([np.nan])
    return {
        "name": run.name,
        "model": run.path,
        "class_map": run.class_map,
        "images": run.images,
        "miou": _num(run.confusion.miou()),
        "pixel_accuracy": _num(run.confusion.pixel_accuracy()),
        "frequency_weighted_iou": _num(run.confusion.frequency_weighted_iou()),
        "boundary_f": _num(run.boundary.mean_boundary_f()),
        "boundary_iou": _num(run.boundary.mean_boundary_iou()),
        "boundary_f_curve": [(t, _num(f)) for t, f in run.boundary.boundary_f_curve()],
        "temporal_consistency": _num(run.temporal.tc()),
        "flicker": _num(run.temporal.flicker()),
        "sequence_pairs": len(run.temporal.tc_values),
        "keyframe_share": run.pipeline.keyframe_share(),
        "latency_ms": {
            "frame_p50": _num(np.median(frame_ms)),
            "frame_p95": _num(np.percentile(frame_ms, 95)),
            "invoke_p50": _num(stages["segment"]["p50_ms"]) if "segment" in stages else None,
        },
        "per_class": per_class,
    }


def _num(value: float) -> float | None:
    """Floats for JSON: NaN (a class never seen) becomes null."""
    value = float(value)
    return None if np.isnan(value) else round(value, 6)
