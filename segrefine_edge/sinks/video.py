"""The rendered view as a video file at the source's frame rate."""

from __future__ import annotations

from pathlib import Path

import cv2

from segrefine_edge.errors import SinkError
from segrefine_edge.sinks.base import ClosingSink, SinkContext, SinkItem, check_writable_dir

KIND = "video"
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def accepts(spec: str) -> bool:
    return Path(spec).suffix.lower() in _FOURCC


def open_sink(spec: str, context: SinkContext) -> VideoFileSink:
    return VideoFileSink(spec, context.fps, context.view_size)


class VideoFileSink(ClosingSink):
    """Opened before the first frame, so a bad path or codec fails before any work."""

    needs_view = True

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        fourcc = _FOURCC.get(self.path.suffix.lower())
        if fourcc is None:
            raise SinkError(f"cannot write video '{self.path.name}': use a .mp4, .avi, .mkv or .mov name")
        check_writable_dir(self.path.parent if str(self.path.parent) else Path("."), "the video")
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), fps, size_wh)
        if not self.writer.isOpened():
            raise SinkError(f"OpenCV could not open {self.path} for writing with codec {fourcc}")
        self.size_wh = size_wh
        self.frames = 0

    def write(self, item: SinkItem) -> None:
        image = item.view
        if (image.shape[1], image.shape[0]) != self.size_wh:
            image = cv2.resize(image, self.size_wh)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()
