"""Palette PNGs of class indices per frame (``png/VIDEO/frame_000123.png``), with ``labelmap.txt``
(the classes in index order) and ``classes.json`` (names, RGB palette), as `eval` reads them."""

from __future__ import annotations

import json
from pathlib import Path

from segrefine_edge.annotate.formats.base import ExportJob, frame_name, labelmap
from segrefine_edge.atomic import write_atomic

NAME = "png"


def export(job: ExportJob) -> list[Path]:
    root = job.folder / "png"
    written = []
    for record in job.records:
        path = root / record["video"] / f"{frame_name(record)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, job.mask_bytes(record))
        written.append(path)
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / "labelmap.txt", labelmap(job.labels, job.palette, background=False).encode())
    classes = {"classes": job.labels, "palette": job.palette.tolist()}
    write_atomic(root / "classes.json", json.dumps(classes, indent=1).encode())
    return [root / "labelmap.txt", root / "classes.json", *written]
