"""Live sources (cameras, network streams) that never hang the program.

A reader thread opens the capture and keeps only the newest frame, so latency never grows.
Everything the main thread does with it waits in slices of a tenth of a second, so a stop
(Ctrl-C, SIGTERM, ``--duration``) is honoured within that, whatever the network does: a port
that accepts and never answers, a stream that stalls with its socket open. A stream that ends
or stalls is an error unless the policy allows reconnects, which back off (1, 2, 4 ... 30 s)
and are counted in the summary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from segrefine_edge.errors import SourceError
from segrefine_edge.sources import Frame, Source

_SLICE_S = 0.1
_RUNNING: set[threading.Thread] = set()   # capture threads still inside OpenCV


def captures_running() -> bool:
    """Whether a capture thread is still inside OpenCV (a connection given up on): a program
    that ends now must leave without running C++ static destructors under it."""
    return any(thread.is_alive() for thread in _RUNNING)


@dataclass(frozen=True)
class LivePolicy:
    """How long to wait for a live source, and whether to reconnect.

    ``open_timeout``: seconds for the first frame of a connection; ``stall_timeout``: seconds
    without a new frame before the stream counts as stalled; ``reconnects``: attempts after an
    end or a stall (0: either is an error); backoff doubles from 1 s up to ``backoff_max``.
    """

    open_timeout: float = 10.0
    stall_timeout: float = 5.0
    reconnects: int = 0
    backoff_max: float = 30.0


class _Connection:
    """One capture and the thread that opens and reads it. A connection that hangs in native
    code is abandoned (its daemon thread ends with the process), never waited for. The thread
    starts with ``start()``, not on construction: its first frame can arrive before the next
    line of the constructing thread runs, so the owner must know the connection first."""

    def __init__(self, target: int | str, io_timeout_s: float, deliver: Callable[[_Connection, Any], None]) -> None:
        self.target, self.io_timeout_s, self.deliver = target, io_timeout_s, deliver
        self.opened = threading.Event()
        self.failed = threading.Event()
        self.ended = threading.Event()
        self.closing = threading.Event()
        self.fps = 0.0
        self.capture: cv2.VideoCapture | None = None
        self.thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> None:
        _RUNNING.add(self.thread)
        self.thread.start()

    def _open(self) -> cv2.VideoCapture:
        if isinstance(self.target, int):
            capture = cv2.VideoCapture(self.target)
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            return capture
        # A second past the policy's own deadline: the policy decides and says why, then
        # OpenCV's timeout frees the thread soon after
        ms = int((self.io_timeout_s + 1.0) * 1000)
        return cv2.VideoCapture(self.target, cv2.CAP_ANY,
                                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])

    def _run(self) -> None:
        try:
            self._read_all()
        finally:
            _RUNNING.discard(self.thread)

    def _read_all(self) -> None:
        capture = self._open()
        self.capture = capture
        if not capture.isOpened():
            self.failed.set()
            return
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.opened.set()
        while not self.closing.is_set():
            ok, image = capture.read()
            if not ok or image is None or not image.size:
                self.ended.set()
                break
            self.deliver(self, image)
        capture.release()

    def close(self, wait_s: float = 0.0) -> None:
        """Ask the thread to stop; wait up to ``wait_s`` for it (OpenCV's own timeouts end a
        blocked open or read at the policy's open timeout)."""
        self.closing.set()
        if wait_s and self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(wait_s)


class LiveSource(Source):
    """A camera or network stream; ``read()`` returns the newest frame not yet returned.

    Call ``watch(stop)`` to make every wait end when ``stop`` is set: ``read()`` then returns None.
    """

    live = True

    def __init__(self, target: int | str, description: str, policy: LivePolicy | None = None,
                 stop: threading.Event | None = None) -> None:
        self.target, self.description = target, description
        self.policy = policy or LivePolicy()
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._index = 0
        self._last_returned = -1
        self._last_arrival = time.monotonic()
        self._started = time.monotonic()
        self._stop = stop or threading.Event()      # set: the first connection gives up (SourceError)
        self.dropped = 0
        self.reconnects = 0
        self._connection = self._connect(first=True)
        first = self._latest
        self.size = (first.image.shape[1], first.image.shape[0])
        self.fps = self._connection.fps or 30.0

    def watch(self, stop: threading.Event) -> None:
        """End every wait (and make ``read`` return None) once ``stop`` is set."""
        self._stop = stop

    def _deliver(self, connection: _Connection, image: np.ndarray) -> None:
        with self._cond:
            if connection is not self._connection and self._latest is not None:
                return                                   # a frame from a connection given up on
            now = time.monotonic()
            self._latest = Frame(image, self._index, now - self._started, arrived=now)
            self._index += 1
            self._last_arrival = now
            self._cond.notify_all()

    def _connect(self, first: bool) -> _Connection:
        """A new connection that has delivered a frame; SourceError when it gives none in time."""
        seen = self._index
        connection = _Connection(self.target, self.policy.open_timeout, self._deliver)
        with self._cond:
            self._connection = connection
        connection.start()
        deadline = time.monotonic() + self.policy.open_timeout
        with self._cond:
            while self._index == seen:
                if connection.failed.is_set():
                    raise SourceError(f"{self.description} could not be opened; check that it exists, answers and "
                                      "is not in use")
                if connection.ended.is_set() or time.monotonic() >= deadline:
                    connection.close(wait_s=1.0)
                    what = "opened but gave no frame" if connection.opened.is_set() else "did not answer"
                    raise SourceError(f"{self.description} {what} within {self.policy.open_timeout:g} s")
                if self._stop.is_set():
                    connection.close()
                    raise SourceError(f"{self.description}: stopped while connecting")
                self._cond.wait(_SLICE_S)
        if not first:
            self.reconnects += 1
        return connection

    def _lost(self) -> str | None:
        """Why the current connection is no use any more, or None while it is."""
        if self._connection.failed.is_set():
            return "could not be reopened"
        if self._connection.ended.is_set():
            return "ended"
        quiet = time.monotonic() - self._last_arrival
        if quiet > self.policy.stall_timeout:
            return f"stalled (no frame for {quiet:.0f} s)"
        return None

    def _reconnect(self, reason: str) -> bool:
        """Try the policy's reconnects with backoff; False when stopped meanwhile."""
        self._connection.close()
        if self.reconnects >= self.policy.reconnects:
            raise SourceError(f"{self.description} {reason}" + (
                f" and {self.reconnects} reconnect(s) did not keep it up" if self.policy.reconnects else
                "; pass --reconnect N to reconnect")
            )
        delay = min(2.0 ** self.reconnects, self.policy.backoff_max)
        if self._stop.wait(delay):
            return False
        try:
            self._connect(first=False)
        except SourceError:
            self.reconnects += 1       # a failed attempt counts against the policy too
            self._last_arrival = time.monotonic()
            return not self._stop.is_set()
        return True

    def read(self) -> Frame | None:
        while not self._stop.is_set():
            with self._cond:
                latest = self._latest
                if latest is not None and latest.index > self._last_returned:
                    self.dropped += latest.index - self._last_returned - 1
                    self._last_returned = latest.index
                    return latest
                self._cond.wait(_SLICE_S)
            reason = self._lost()
            if reason is not None and not self._reconnect(reason):
                return None
        return None

    def counters(self) -> dict[str, Any]:
        """Adds the stale frames dropped because a newer one had arrived, and the reconnects."""
        return {**super().counters(), "dropped_frames": self.dropped, "reconnects": self.reconnects}

    def close(self) -> None:
        self._connection.close(wait_s=1.0)
