"""An OpenCV window. Windows must be drawn from the main thread, so ``write`` (on the writer
thread) only leaves the newest view, and the runner calls ``pump`` from the main thread."""

from __future__ import annotations

import os
import platform

import cv2
import numpy as np

from segrefine_edge.errors import SinkError
from segrefine_edge.sinks.base import ClosingSink, SinkContext, SinkItem

KIND = "display"


def accepts(spec: str) -> bool:
    return spec == "display"


def open_sink(spec: str, context: SinkContext) -> DisplaySink:
    return DisplaySink()


def display_available() -> bool:
    """Whether a window can be shown: a display server, and an OpenCV built with a GUI."""
    if platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return _opencv_has_gui()


def _opencv_has_gui() -> bool:
    info = cv2.getBuildInformation()
    gui = info.split("GUI:", 1)[1].splitlines()[0].strip() if "GUI:" in info else ""
    return gui not in ("", "NONE")


class DisplaySink(ClosingSink):
    """``q`` or Esc in the window asks the run to stop."""

    needs_view = True

    def __init__(self, title: str = "segrefine-edge") -> None:
        if not _opencv_has_gui():
            raise SinkError("this OpenCV has no GUI (opencv-python-headless); pip install opencv-python "
                            "for a window, or pass --no-display")
        self.title = title
        self._latest: np.ndarray | None = None
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def write(self, item: SinkItem) -> None:
        self._latest = item.view

    def pump(self) -> bool:
        """Show the newest view (main thread); returns False when the user asked to quit."""
        if self._latest is not None:
            cv2.imshow(self.title, self._latest)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)
