"""Label images: palette PNGs written atomically, and masks read back as class indices.

A mask PNG holds class indices as pixel values and the class colours in its palette, so it
opens as a colour image and reads back as labels (what CVAT, Label Studio and VOC use).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from segrefine_edge.atomic import write_atomic
from segrefine_edge.errors import DatasetError


def write_labels_png(path: Path, labels: np.ndarray, palette_rgb: np.ndarray) -> None:
    """A palette PNG for uint8 labels (<=256 classes), else a 16-bit grey PNG of the indices."""
    if labels.dtype == np.uint8:
        image = Image.fromarray(labels, mode="P")
        image.putpalette(np.asarray(palette_rgb, np.uint8)[:256].tobytes())
    else:
        image = Image.fromarray(labels.astype(np.uint16))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    write_atomic(path, buffer.getvalue())


def read_labels(path: str | Path) -> np.ndarray:
    """Class indices from a mask image: palette (VOC, ours) or grey (CamVid) PNGs.

    A colour (RGB) mask is rejected: its colours would have to be mapped back to classes.
    """
    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA"):
                raise DatasetError(f"mask {path} is a colour image; masks must hold class indices "
                                   "(grey or palette PNG)")
            return np.asarray(image)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"mask {path} cannot be read ({exc}); is it an image?") from exc
