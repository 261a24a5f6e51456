"""One status line for long work on a terminal: frames done, FPS and, where the length is
known, percent and ETA. Silent when stderr is not a terminal (logs, pipes, systemd) or with
``--quiet``, so nothing but the summary reaches a log."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

from segrefine_edge.timing import StageTimer

_EVERY_S = 0.5


def format_status(frames: int, fps: float, total: int | None) -> str:
    """``120/795 frames (15%)  21.3 FPS  ETA 0:32`` (no percent or ETA without a total)."""
    line = f"{frames} frames  {fps:.1f} FPS"
    if total:
        left = max(total - frames, 0)
        eta = f"{int(left / fps) // 60}:{int(left / fps) % 60:02d}" if fps > 0 else "?"
        line = f"{frames}/{total} frames ({100 * frames // total}%)  {fps:.1f} FPS  ETA {eta}"
    return line


class StatusLine:
    """A thread that redraws the status line every half second while a run lasts (a context manager)."""

    def __init__(self, timer: StageTimer, total: int | None, enabled: bool, stream: TextIO | None = None,
                 status: Callable[[int, float, int | None], str] = format_status) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.timer, self.total, self.status = timer, total, status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._width = 0

    def _draw(self) -> None:
        line = self.status(self.timer.frames, self.timer.fps(), self.total)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def _run(self) -> None:
        while not self._stop.wait(_EVERY_S):
            self._draw()

    def __enter__(self) -> StatusLine:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join()
        self.stream.write("\r" + " " * self._width + "\r")   # the summary replaces the line
        self.stream.flush()


def counter(enabled: bool, stream: TextIO | None = None) -> Callable[[str, int, int], None] | None:
    """A ``(what, done, total)`` reporter that redraws ``calibrating 50/200`` on a terminal, or
    None (report nothing) off a terminal or with ``--quiet``."""
    out = stream or sys.stderr
    if not (enabled and out.isatty()):
        return None

    def report(what: str, done: int, total: int) -> None:
        out.write(f"\r{what} {done}/{total}" + ("\n" if done == total else ""))
        out.flush()
    return report
