"""COCO instances JSON (``coco/annotations.json``): one annotation per class present in a
frame, its mask as compressed RLE from pycocotools; ``images`` entries carry the video and the
frame index, and name the frame image the job wrote, relative to the job folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segrefine_edge.annotate.formats.base import ExportJob
from segrefine_edge.atomic import write_atomic
from segrefine_edge.errors import MissingExtraError
from segrefine_edge.postprocess import classes_in

NAME = "coco"
NEEDS_IMAGES = True


def check_ready(labels: list[str], palette) -> None:
    """Before any work: the COCO export needs pycocotools."""
    _mask_api()


def _mask_api():
    try:
        from pycocotools import mask
    except ImportError as exc:
        raise MissingExtraError("the COCO export needs pycocotools: pip install 'segrefine-edge[annotate]'") from exc
    return mask


def export(job: ExportJob) -> list[Path]:
    mask_api = _mask_api()
    images, annotations = [], []
    for image_id, record in enumerate(job.records, 1):
        labels = job.mask(record)
        images.append({"id": image_id, "file_name": record["image"],
                       "width": int(labels.shape[1]), "height": int(labels.shape[0]),
                       "video": record["video"], "frame_index": record["frame"], "time_s": record["time"]})
        for class_index in classes_in(labels):
            rle = mask_api.encode(np.asfortranarray(labels == class_index))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(class_index) + 1,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_api.area(rle)), "bbox": [round(float(v), 2) for v in mask_api.toBbox(rle)],
                "iscrowd": 0, "score": round(1.0 - record["uncertain_share"], 4),
            })
    categories = [{"id": i + 1, "name": name, "supercategory": "scene"} for i, name in enumerate(job.labels)]
    document = {"info": {"description": f"segrefine-edge annotate, {job.model}"}, "images": images,
                "annotations": annotations, "categories": categories}
    path = job.folder / "coco" / "annotations.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(document).encode())
    return [path]
