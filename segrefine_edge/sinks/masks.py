"""One palette PNG of class indices per frame, in a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segrefine_edge.pngio import write_labels_png
from segrefine_edge.sinks.base import ClosingSink, SinkContext, SinkItem, check_writable_dir

KIND = "masks"


def accepts(spec: str) -> bool:
    """A folder: a trailing slash, an existing folder, or a name without a suffix."""
    return spec.endswith(("/", "\\")) or Path(spec).is_dir() or not Path(spec).suffix


def open_sink(spec: str, context: SinkContext) -> MaskSink:
    return MaskSink(spec, context.palette)


class MaskSink(ClosingSink):
    """Named after the image a frame came from, else its frame number (``000123.png``). A name
    already written in this run (an image folder replayed by ``--loop``, or ``a.png`` beside
    ``a.jpg``) gets the frame number appended, so no mask overwrites another."""

    needs_view = False

    def __init__(self, folder: str | Path, palette_rgb: np.ndarray) -> None:
        self.folder = Path(folder)
        check_writable_dir(self.folder, "masks")
        self.palette = np.asarray(palette_rgb, np.uint8)
        self.written = 0
        self._names: set[str] = set()

    def write(self, item: SinkItem) -> None:
        index = item.frame.index
        name = item.frame.name or f"{index:06d}"
        if name in self._names:
            name = f"{name}_{index:06d}"
        self._names.add(name)
        write_labels_png(self.folder / f"{name}.png", item.result.labels, self.palette)
        self.written += 1
