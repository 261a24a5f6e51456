"""Frame sources, built by one factory keyed on the input string.

Grammar (as jetson-inference's): a camera index (``0``) or ``/dev/videoN``; ``rtsp://``,
``http(s)://`` streams; a video file; a folder of images; a glob of images. Cameras and
network streams are *live*: a reader keeps only the newest frame so latency never grows.
Files and folders deliver every frame, in order. Undecodable frames in the middle of a file
or folder are skipped and counted.
"""

from __future__ import annotations

import glob
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from segrefine_edge.datasets import IMAGE_SUFFIXES
from segrefine_edge.errors import SourceError

if TYPE_CHECKING:
    from segrefine_edge.live import LivePolicy

_MAX_CONSECUTIVE_BAD_FRAMES = 50
_NAMED_SKIPS = 10          # unreadable files named in the summary (all are counted)


@dataclass
class Frame:
    """A BGR uint8 image with its position in the source, a timestamp in seconds and, for a
    frame read from an image file, that file's stem (outputs are named after it). A live
    source's frames also carry when they arrived (``time.monotonic()``), so a run can report
    how old a frame is by the time its result is written."""

    image: np.ndarray
    index: int
    timestamp: float
    name: str | None = None
    arrived: float | None = None


class Source:
    """Base class: iterate frames with ``read()`` until it returns None."""

    live = False
    fps: float = 30.0
    size: tuple[int, int] = (0, 0)  # (width, height) of the first frame
    skipped = 0

    @property
    def length(self) -> int | None:
        """How many frames the source will deliver, where it can tell (for progress and ETA)."""
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self) -> Frame | None:
        raise NotImplementedError

    def inputs(self) -> list[Path]:
        """The files this source reads (none for a camera or stream): outputs must not overwrite them."""
        return []

    def seek(self, index: int) -> None:
        """Make frame ``index`` the next one ``read`` returns (by reading forward; files that can
        jump, jump)."""
        while self._position() < index and self.read() is not None:
            pass

    def _position(self) -> int:
        return getattr(self, "index", 0)

    def watch(self, stop: threading.Event) -> None:
        """Let ``stop`` end a wait inside ``read`` (live sources wait on the network; files do not)."""

    def counters(self) -> dict[str, Any]:
        """What the source did besides delivering frames, for the run's summary: frames it
        could not decode (and skipped), and what subclasses count (dropped stale frames, loops)."""
        return {"skipped_frames": self.skipped}

    def close(self) -> None:
        """Release the device or file."""


class VideoFileSource(Source):
    """Every frame of a video file, in order; corrupt frames are skipped and counted."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise SourceError(f"video {path} does not exist; check the path")
        self.capture = cv2.VideoCapture(path)
        if not self.capture.isOpened():
            raise SourceError(f"{path} could not be opened as a video; is it a video file OpenCV can decode?")
        self.path = path
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.index = 0
        self._ended = False
        first = self._next_image()
        if first is None:
            raise SourceError(f"{path} holds no decodable frame; the file may be empty or corrupt")
        self._pending: np.ndarray | None = first
        self.size = (first.shape[1], first.shape[0])

    def _next_image(self) -> np.ndarray | None:
        """The next decodable frame. A frame that fails to decode is skipped by reading on
        (never by seeking: a seek in a damaged file can land before the bad frame and loop).
        Failures count as skipped frames only once a good frame follows them; failures at
        the end are the end (containers often over-report their frame count)."""
        failed = 0
        while failed <= _MAX_CONSECUTIVE_BAD_FRAMES:
            ok, image = self.capture.read()
            if ok and image is not None and image.size:
                self.skipped += failed
                return image
            if self.frame_count <= 0 or self.capture.get(cv2.CAP_PROP_POS_FRAMES) >= self.frame_count:
                return None
            failed += 1
        return None

    def inputs(self) -> list[Path]:
        return [Path(self.path)]

    @property
    def length(self) -> int | None:
        """The container's frame count (an estimate for some codecs), None when it gives none."""
        return self.frame_count or None

    def counters(self) -> dict[str, Any]:
        """Adds, for a file that ended well before the frame count its container declares (a
        truncated or damaged file), the frames it promised; containers often over-report by a
        frame or two, which is not counted."""
        delivered = self.index + self.skipped
        ended = self._ended and self.frame_count - delivered > max(2, self.frame_count // 100)
        return {**super().counters(), **({"declared_frames": self.frame_count} if ended else {})}

    def seek(self, index: int) -> None:
        """Jump to frame ``index`` (OpenCV seeks to the keyframe before it and decodes forward)."""
        if index == self.index:
            return
        self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        self.index, self._pending, self._ended = index, None, False

    def read(self) -> Frame | None:
        image = self._pending if self._pending is not None else self._next_image()
        self._pending = None
        self._ended = image is None
        if image is None:
            return None
        frame = Frame(image, self.index, self.index / self.fps)
        self.index += 1
        return frame

    def close(self) -> None:
        self.capture.release()


class ImageFilesSource(Source):
    """A sorted list of image files (a folder or a glob); unreadable files are skipped and counted."""

    def __init__(self, files: list[Path], fps: float = 30.0) -> None:
        if not files:
            raise SourceError("no image files found; give a folder or glob that holds .png/.jpg images")
        self.files, self.fps, self.index, self.position = files, fps, 0, 0
        self.skipped_files: list[str] = []
        first = None
        for path in files:
            first = cv2.imread(str(path))
            if first is not None:
                break
        if first is None:
            raise SourceError(f"none of the {len(files)} image files could be decoded")
        self.size = (first.shape[1], first.shape[0])

    def inputs(self) -> list[Path]:
        return list(self.files)

    def counters(self) -> dict[str, Any]:
        """Adds the unreadable files skipped, by name (the first few)."""
        return {**super().counters(), **({"skipped_files": list(self.skipped_files)} if self.skipped_files else {})}

    @property
    def length(self) -> int | None:
        """The number of files (unreadable ones among them are skipped when met)."""
        return len(self.files)

    def read(self) -> Frame | None:
        while self.position < len(self.files):
            path = self.files[self.position]
            self.position += 1
            image = cv2.imread(str(path))
            if image is None:
                self.skipped += 1
                if len(self.skipped_files) < _NAMED_SKIPS:
                    self.skipped_files.append(str(path))
                continue
            frame = Frame(image, self.index, self.index / self.fps, path.stem)
            self.index += 1
            return frame
        return None


_CREDENTIALS = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


def redact(uri: str) -> str:
    """``uri`` fit to print or log: a camera URL's ``user:password@`` becomes ``***@``."""
    return _CREDENTIALS.sub(r"\1***@", uri)


def open_source(uri: str, policy: LivePolicy | None = None, stop: threading.Event | None = None) -> Source:
    """Build the source that ``uri`` names (see the module docstring for the grammar); ``policy``
    governs live ones, and ``stop``, once set, ends their wait for the first frame (SourceError).
    Messages name a network source without its credentials."""
    from segrefine_edge.live import LiveSource  # live.py builds on this module's Source

    if re.fullmatch(r"\d+", uri):
        return LiveSource(int(uri), f"camera {uri}", policy, stop)
    if re.fullmatch(r"/dev/video\d+", uri):
        return LiveSource(uri, f"camera {uri}", policy, stop)
    if re.match(r"^(rtsp|rtmp|http|https|udp|tcp)://", uri):
        return LiveSource(uri, f"stream {redact(uri)}", policy, stop)
    path = Path(uri)
    if path.is_dir():
        return ImageFilesSource(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
    if any(ch in uri for ch in "*?["):
        return ImageFilesSource([Path(p) for p in sorted(glob.glob(uri)) if Path(p).suffix.lower() in IMAGE_SUFFIXES])
    if path.suffix.lower() in IMAGE_SUFFIXES:
        if not path.is_file():
            raise SourceError(f"image {uri} does not exist; check the path")
        return ImageFilesSource([path])
    return VideoFileSource(uri)


class LoopingSource(Source):
    """Replays a file or folder source from the start whenever it ends (soak tests, demos).

    Frame indices keep counting across loops, so mask names stay unique.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.inner = open_source(uri)
        if self.inner.live:
            self.inner.close()
            raise SourceError(f"--loop replays files and folders; {redact(uri)} is a live source")
        self.fps, self.size, self.index, self.loops = self.inner.fps, self.inner.size, 0, 0
        self._skipped_before = 0

    @property
    def skipped(self) -> int:  # type: ignore[override]
        return self._skipped_before + self.inner.skipped

    def read(self) -> Frame | None:
        frame = self.inner.read()
        if frame is None:
            self._skipped_before += self.inner.skipped
            self.inner.close()
            self.inner = open_source(self.uri)
            self.loops += 1
            frame = self.inner.read()
            if frame is None:
                return None
        frame.index = self.index
        frame.timestamp = self.index / self.fps
        self.index += 1
        return frame

    def inputs(self) -> list[Path]:
        return self.inner.inputs()

    def counters(self) -> dict[str, Any]:
        """Adds how many times the input was replayed from its start."""
        return {**super().counters(), "loops": self.loops}

    def close(self) -> None:
        self.inner.close()
