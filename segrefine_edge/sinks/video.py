"""The rendered view as a video file at the source's frame rate, written with PyAV (FFmpeg).

Why PyAV and not OpenCV's VideoWriter: OpenCV reports a failed write only as a log line and
carries on (a full disk gave exit 0 and an unplayable file), and its MP4 keeps the index at the
end, so a killed process leaves nothing playable. PyAV raises on every failed write, and writes
MP4 as fragments (``frag_keyframe+empty_moov``, a keyframe every second, each packet flushed):
after SIGKILL, a power cut or a full disk, every fragment finished so far plays.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from segrefine_edge.errors import SinkError
from segrefine_edge.sinks.base import ClosingSink, SinkContext, SinkItem, check_output_file

KIND = "video"
_MS = Fraction(1, 1000)
# container format, codec, codec options, container options; by the name's suffix
_FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
_H264 = ("libx264", {"preset": "veryfast", "crf": "23"})
_FORMATS = {
    ".mp4": ("mp4", *_H264, _FRAGMENTED_MP4),
    ".m4v": ("mp4", *_H264, _FRAGMENTED_MP4),
    ".mov": ("mov", *_H264, _FRAGMENTED_MP4),
    ".mkv": ("matroska", *_H264, {"flush_packets": "1"}),
    ".avi": ("avi", "mjpeg", {"q:v": "3"}, {"flush_packets": "1"}),
}


def accepts(spec: str) -> bool:
    return Path(spec).suffix.lower() in _FORMATS


def open_sink(spec: str, context: SinkContext) -> VideoFileSink | SegmentedVideoSink:
    if context.segment_seconds:
        return SegmentedVideoSink(spec, context.fps, context.view_size, context.segment_seconds)
    return VideoFileSink(spec, context.fps, context.view_size)


class VideoFileSink(ClosingSink):
    """Opened before the first frame, so a bad path or size fails before any work; a failed
    write raises SinkError naming how many frames the file holds."""

    needs_view = True

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int]) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in _FORMATS:
            raise SinkError(f"cannot write video '{self.path.name}': use a .mp4, .mov, .m4v, .mkv or .avi name")
        width, height = size_wh
        if width < 2 or height < 2:
            raise SinkError(f"a {width}x{height} view is too small for a video; the input must be at least 2x2 pixels")
        check_output_file(self.path, "the video")
        form, codec, codec_options, container_options = _FORMATS[self.path.suffix.lower()]
        # H.264 with 4:2:0 chroma needs even sides: an odd last row or column is dropped
        self.size_wh = (width - width % 2, height - height % 2)
        try:
            self.container = av.open(str(self.path), "w", format=form, options=container_options)
            self.stream = self.container.add_stream(codec, rate=_rate(fps))
        except (OSError, av.FFmpegError) as exc:
            raise SinkError(f"cannot write video {self.path}: {_reason(exc)}") from exc
        self.stream.width, self.stream.height = self.size_wh
        self.stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        self.stream.options = {**codec_options, "g": str(max(1, round(fps)))}   # a keyframe, a fragment, a second
        # Frames are stamped with their arrival (ms): a live stream that delivers 10 fps plays at
        # 10 fps whatever rate it claims. AVI can only hold a constant rate, so it counts frames.
        self._timed = form != "avi"
        if self._timed:
            self.stream.codec_context.time_base = _MS
            self.stream.time_base = _MS
        self._first_ms: int | None = None
        self._last_pts = -1
        self.frames = 0
        self._failed = False

    def write(self, item: SinkItem) -> None:
        image = item.view
        width, height = self.size_wh
        if (image.shape[1], image.shape[0]) != (width, height):
            image = np.ascontiguousarray(image[:height, :width])
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        if self._timed:
            stamp = round(item.frame.timestamp * 1000)
            self._first_ms = stamp if self._first_ms is None else self._first_ms
            frame.pts = self._last_pts = max(stamp - self._first_ms, self._last_pts + 1)
            frame.time_base = _MS
        self._mux(self.stream.encode(frame))
        self.frames += 1

    def _mux(self, packets: list) -> None:
        try:
            self.container.mux(packets)
        except (OSError, av.FFmpegError) as exc:
            self._failed = True
            raise SinkError(f"cannot write video {self.path}: {_reason(exc)}; it holds the frames written "
                            "before this one and plays") from exc

    def close(self) -> None:
        if self._failed:
            self._close_quietly()
            return
        try:
            self._mux(self.stream.encode(None))
        finally:
            self._close_quietly()

    def _close_quietly(self) -> None:
        """Close the container; after a failed write, closing it may fail again: the error that
        mattered was already raised."""
        try:
            self.container.close()
        except (OSError, av.FFmpegError):
            if not self._failed:
                raise


class SegmentedVideoSink(ClosingSink):
    """The view as a run of files, ``NAME-0001.mp4``, ``NAME-0002.mp4``..., each ``seconds`` of frames
    long (by their timestamps): a service that records for weeks leaves files that can be copied,
    played and deleted one by one, and a crash loses at most the fragment being written."""

    needs_view = True

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int], seconds: float) -> None:
        self.path, self.fps, self.size_wh, self.seconds = Path(path), fps, size_wh, seconds
        self.files: list[Path] = []
        self.current = self._next()            # the first file now, so a bad path fails before any work
        self._started: float | None = None

    def _next(self) -> VideoFileSink:
        name = self.path.with_name(f"{self.path.stem}-{len(self.files) + 1:04d}{self.path.suffix}")
        sink = VideoFileSink(name, self.fps, self.size_wh)
        self.files.append(name)
        return sink

    def write(self, item: SinkItem) -> None:
        stamp = item.frame.timestamp
        if self._started is None:
            self._started = stamp
        elif stamp - self._started >= self.seconds:
            self.current.close()
            self.current = self._next()
            self._started = stamp
        self.current.write(item)

    def close(self) -> None:
        self.current.close()


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0] or type(exc).__name__
