"""CVAT's "Segmentation mask 1.1": one zip per video (``cvat/VIDEO.zip``) holding
``labelmap.txt``, ``ImageSets/Segmentation/default.txt`` and ``SegmentationClass/frame_000123.png``.

The masks are RGB, each class in its labelmap colour: CVAT maps colours back to labels and
refuses a colour the labelmap does not declare ("Undeclared label"), so the palette must give
every class its own colour and none may be black, CVAT's background. Frames are named as a
CVAT video task numbers them, so each mask lands on its frame.
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import cv2
import numpy as np

from segrefine_edge.annotate.formats.base import ExportJob, frame_name, labelmap, write_zip
from segrefine_edge.errors import SegrefineError

NAME = "cvat"


def check_ready(labels: list[str], palette: np.ndarray) -> None:
    """Refuse a palette CVAT could not read back: shared colours, or black (its background)."""
    colours = [tuple(c) for c in palette.tolist()]
    if len(set(colours)) != len(colours) or (0, 0, 0) in colours:
        raise SegrefineError("the CVAT export needs a distinct, non-black colour per class; give the model a "
                             "palette with --palette (a JSON list of [r, g, b])")


def export(job: ExportJob) -> list[Path]:
    check_ready(job.labels, job.palette)
    bgr = job.palette[:, ::-1].astype(np.uint8)
    written = []
    for video, frames in groupby(job.records, key=lambda r: r["video"]):
        frames = list(frames)
        members = [("labelmap.txt", labelmap(job.labels, job.palette, background=True).encode()),
                   ("ImageSets/Segmentation/default.txt", "".join(f"{frame_name(r)}\n" for r in frames).encode())]
        for record in frames:
            colour = bgr[np.minimum(job.mask(record), len(bgr) - 1)]
            members.append((f"SegmentationClass/{frame_name(record)}.png", cv2.imencode(".png", colour)[1].tobytes()))
        path = job.folder / "cvat" / f"{video}.zip"
        write_zip(path, members)
        written.append(path)
    return written
