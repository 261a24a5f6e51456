"""Label Studio, which has no video segmentation: the sampled frames as images plus
``labelstudio/tasks.json``, each task's ``predictions`` holding one BrushLabels region per class
present, in Label Studio's own RLE, with the model's name as ``model_version``. A prediction's
``score`` is the frame's confidence, 1 - its uncertain share, so sorting tasks by prediction
score, lowest first, gives annotators the frames that need them most. ``config.xml`` is the
labelling configuration that matches (``from_name`` "tag", ``to_name`` "image").

Images are referenced as Label Studio's local files (``/data/local-files/?d=...``, relative to
the job folder): start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and
LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to the job folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from segrefine_edge.annotate import brush_rle
from segrefine_edge.annotate.formats.base import ExportJob
from segrefine_edge.atomic import write_atomic
from segrefine_edge.postprocess import classes_in

NAME = "labelstudio"
NEEDS_IMAGES = True
URL_PREFIX = "/data/local-files/?d="


def config_xml(labels: list[str], palette: np.ndarray) -> str:
    entries = "\n".join(f"    <Label value={quoteattr(name)} background=\"#{r:02x}{g:02x}{b:02x}\"/>"
                        for name, (r, g, b) in zip(labels, palette.tolist(), strict=True))
    return (f"<View>\n  <Image name=\"image\" value=\"$image\" zoom=\"true\"/>\n"
            f"  <BrushLabels name=\"tag\" toName=\"image\">\n{entries}\n  </BrushLabels>\n</View>\n")


def task(job: ExportJob, record: dict) -> dict:
    labels = job.mask(record)
    height, width = labels.shape
    regions = [{"id": f"{record['video']}-{record['frame']}-{int(c)}", "from_name": "tag", "to_name": "image",
                "type": "brushlabels", "origin": "prediction", "original_width": int(width),
                "original_height": int(height), "image_rotation": 0,
                "value": {"format": "rle", "rle": brush_rle.encode(labels == c), "brushlabels": [job.labels[c]]}}
               for c in classes_in(labels)]
    return {"data": {"image": URL_PREFIX + record["image"], "video": record["video"], "frame": record["frame"]},
            "predictions": [{"model_version": job.model, "score": round(1.0 - record["uncertain_share"], 4),
                             "result": regions}]}


def export(job: ExportJob) -> list[Path]:
    root = job.folder / "labelstudio"
    root.mkdir(parents=True, exist_ok=True)
    tasks = [task(job, record) for record in job.records]
    write_atomic(root / "tasks.json", json.dumps(tasks).encode())
    write_atomic(root / "config.xml", config_xml(job.labels, job.palette).encode())
    return [root / "tasks.json", root / "config.xml"]
