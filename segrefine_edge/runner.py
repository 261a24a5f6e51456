"""Run a pipeline over a source into sinks, with capture, inference and writing overlapped.

Threads: a reader fills a bounded queue from a file source (so nothing is dropped and
decoding overlaps inference); live sources keep only their newest frame themselves; the main
thread runs the model; a writer thread renders (once, when some sink needs the picture) and
writes, behind another bounded queue. Sinks that must draw on the main thread (a window) are
pumped from it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field

from segrefine_edge.pipeline import Pipeline
from segrefine_edge.render import Renderer
from segrefine_edge.sinks import Sink, SinkItem
from segrefine_edge.sources import Frame, Source
from segrefine_edge.timing import LATENCY, StageTimer

_QUEUE_DEPTH = 4
RSS_EVERY = 1000  # frames between peak-memory readings in the summary
_END = object()


@dataclass
class Outputs:
    """Every sink of a run, and the renderer that draws the picture for those that want one."""

    sinks: list[Sink] = field(default_factory=list)
    renderer: Renderer | None = None
    hud: bool = True

    @property
    def needs_view(self) -> bool:
        return self.renderer is not None and any(sink.needs_view for sink in self.sinks)

    def close(self) -> None:
        """Close every sink, even when one fails; the first failure is raised after the rest closed."""
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as exc:
                first = first or exc
        if first is not None:
            raise first


@dataclass
class RunLimits:
    max_frames: int | None = None
    duration: float | None = None


class _Reader(threading.Thread):
    """Reads every frame of a file source into a bounded queue (blocking when full)."""

    def __init__(self, source: Source, timer: StageTimer, stop: threading.Event) -> None:
        super().__init__(name="reader", daemon=True)
        self.source, self.timer, self.stop = source, timer, stop
        self.frames: queue.Queue = queue.Queue(_QUEUE_DEPTH)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                start = time.perf_counter()
                frame = self.source.read()
                if frame is None:
                    break
                self.timer.add("capture", (time.perf_counter() - start) * 1000.0)
                while not self.stop.is_set():
                    try:
                        self.frames.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the main thread, which reports it
            self.error = exc
        finally:
            self.frames.put(_END)

    def next(self) -> Frame | None:
        item = self.frames.get()
        return None if item is _END else item


class _Writer(threading.Thread):
    """Renders (when a sink wants the picture) and writes results in order."""

    def __init__(self, outputs: Outputs, timer: StageTimer) -> None:
        super().__init__(name="writer", daemon=True)
        self.outputs, self.timer = outputs, timer
        self.items: queue.Queue = queue.Queue(_QUEUE_DEPTH)
        self.error: BaseException | None = None

    def _hud(self) -> dict[str, float] | None:
        if not self.outputs.hud:
            return None
        shown = ("segment", "refine", LATENCY)       # latency: live sources only, the last frame's
        return {"FPS": self.timer.fps(), **{f"{k} ms": v for k, v in self.timer.last.items() if k in shown}}

    def run(self) -> None:
        while True:
            item = self.items.get()
            if item is _END:
                return
            if self.error is None:
                self.handle(item)

    def handle(self, item: SinkItem) -> None:
        """Render one result where a sink wants the picture, and write it to every sink."""
        out = self.outputs
        try:
            if out.needs_view:
                with self.timer.stage("render"):
                    view = out.renderer.render(item.frame.image, item.result.labels, self._hud())
                item = SinkItem(item.frame, item.result, view)
            with self.timer.stage("write"):
                for sink in out.sinks:
                    sink.write(item)
            if item.frame.arrived is not None:
                self.timer.add(LATENCY, (time.monotonic() - item.frame.arrived) * 1000.0)
        except BaseException as exc:  # reported by the main thread after the run
            self.error = exc


def _pump(sinks: list[Sink]) -> bool:
    """Let main-thread sinks (a window) draw; False when one asks the run to stop."""
    return all(sink.pump() for sink in sinks if hasattr(sink, "pump"))


def run_stream(source: Source, pipeline: Pipeline, outputs: Outputs, limits: RunLimits,
               stop: threading.Event, timer: StageTimer | None = None) -> StageTimer:
    """Process frames until the source ends, a limit is reached or ``stop`` is set.

    Whatever was processed is rendered and written before returning, and every sink is
    closed, so an interrupted run leaves a playable video and complete masks.
    """
    timer = timer or StageTimer()
    reader = None if source.live else _Reader(source, timer, stop)
    writer = _Writer(outputs, timer)
    writer.start()
    if reader is not None:
        reader.start()
    source.watch(stop)
    # --duration sets the same event a signal does, so it ends any wait, not only the next loop
    alarm = threading.Timer(limits.duration, stop.set) if limits.duration else None
    if alarm is not None:
        alarm.daemon = True
        alarm.start()
    try:
        while not stop.is_set():
            if limits.max_frames is not None and timer.frames >= limits.max_frames:
                break
            if reader is not None:
                frame = reader.next()
            else:
                with timer.stage("capture"):
                    frame = source.read()
            if frame is None:
                break
            result = pipeline.segment(frame.image)
            timer.add_all(result.timings_ms)
            writer.items.put(SinkItem(frame, result))
            timer.frame_done()
            if timer.frames % RSS_EVERY == 0:
                timer.record_peak_rss()
            if writer.error is not None or not _pump(outputs.sinks):
                break
    finally:
        if alarm is not None:
            alarm.cancel()
        stop.set()
        writer.items.put(_END)
        writer.join()
        if reader is not None:
            while reader.is_alive():     # unblock a reader waiting on a full queue; with a timeout,
                with contextlib.suppress(queue.Empty):      # as its end marker may be taken already
                    reader.frames.get(timeout=0.1)
            reader.join()
        outputs.close()
    for thread in (reader, writer):
        if thread is not None and thread.error is not None:
            raise thread.error
    return timer
