"""What every export reads: the finished frames, the classes, and deterministic zips."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segrefine_edge.atomic import write_atomic
from segrefine_edge.pngio import read_labels

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)     # fixed, so a resumed job's zip is byte-identical


@dataclass(frozen=True)
class ExportJob:
    """A job's finished frames (records in video and frame order) and what they mean."""

    folder: Path
    records: list[dict]
    labels: list[str]
    palette: np.ndarray          # RGB, one row per class
    model: str

    def mask(self, record: dict) -> np.ndarray:
        return read_labels(self.folder / record["mask"])

    def mask_bytes(self, record: dict) -> bytes:
        return (self.folder / record["mask"]).read_bytes()

    def image_path(self, record: dict) -> Path:
        return self.folder / record["image"]


def frame_name(record: dict) -> str:
    """How a CVAT video task names its frames: frame_000123."""
    return f"frame_{record['frame']:06d}"


def write_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A zip with fixed timestamps and the given member order, written atomically."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buffer.getvalue())


def labelmap(labels: list[str], palette: np.ndarray, background: bool) -> str:
    """CVAT's and VOC's labelmap.txt: ``name:r,g,b::`` per class (CVAT's with its background
    first, black, which no class of ours may then use)."""
    lines = ["# label:color_rgb:parts:actions"] + (["background:0,0,0::"] if background else [])
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(labels, palette.tolist(), strict=True)]
    return "\n".join(lines) + "\n"
