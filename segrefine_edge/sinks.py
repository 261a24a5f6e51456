"""Where results go: a video file, per-frame mask PNGs, a window. Each checks that it can
write before the first frame arrives, and closes cleanly so output written so far stays valid."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import cv2
import numpy as np

from segrefine_edge.errors import SinkError
from segrefine_edge.pngio import write_labels_png

_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def check_writable_dir(folder: Path, purpose: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe"):
            pass
    except OSError as exc:
        raise SinkError(f"cannot write {purpose} to {folder}: {exc.strerror or exc}; choose a writable path") from exc


class VideoFileSink:
    """The rendered view as a video at the source's frame rate; opened before the first frame."""

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

    def write(self, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size_wh:
            image = cv2.resize(image, self.size_wh)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


class MaskSink:
    """One palette PNG of class indices per frame, named by frame number (or the image's name)."""

    def __init__(self, folder: str | Path, palette_rgb: np.ndarray) -> None:
        self.folder = Path(folder)
        check_writable_dir(self.folder, "masks")
        self.palette = np.asarray(palette_rgb, np.uint8)
        self.written = 0

    def write(self, labels: np.ndarray, index: int, name: str | None = None) -> None:
        write_labels_png(self.folder / f"{name or f'{index:06d}'}.png", labels, self.palette)
        self.written += 1

    def close(self) -> None:
        """Nothing is buffered: every mask is complete once write() returns."""


def display_available() -> bool:
    """Whether a window can be shown: a display server, and an OpenCV built with a GUI."""
    if platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return _opencv_has_gui()


def _opencv_has_gui() -> bool:
    info = cv2.getBuildInformation()
    gui = info.split("GUI:", 1)[1].splitlines()[0].strip() if "GUI:" in info else ""
    return gui not in ("", "NONE")


class DisplaySink:
    """An OpenCV window; ``q`` or Esc in the window asks the run to stop."""

    def __init__(self, title: str = "segrefine-edge") -> None:
        if not _opencv_has_gui():
            raise SinkError("this OpenCV has no GUI (opencv-python-headless); pip install opencv-python "
                            "for a window, or pass --no-display")
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image: np.ndarray) -> bool:
        """Show a frame; returns False when the user asked to quit."""
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)
