"""Per-stage timings of the frame path and the run summary (frames, FPS, p50/p95 per stage)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

STAGES = ("capture", "preprocess", "segment", "refine", "postprocess", "render", "write")
# Not a stage: for live sources, how old a frame is when its result has been written (its
# arrival to the end of 'write'); what a viewer of a live stream waits for
LATENCY = "latency"
RSS_SERIES = 64      # peak-RSS readings kept in the summary (the first, then evenly thinned)


class StageStats:
    """One stage's times in bounded memory, for runs of weeks.

    The last ``window`` samples are kept as they are (quantiles of a shorter run are exact);
    every sample also lands in a histogram of log-spaced bins 1% apart from 1 us to 10 min, whose
    quantiles are within 0.5% of the true ones for any run length. 32 KB a stage, whatever the
    frame count.
    """

    WINDOW = 2048
    _LOW_MS, _RATIO, _BINS = 1e-3, 1.01, 2000

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=self.WINDOW)
        self.count, self.total = 0, 0.0
        self._histogram = np.zeros(self._BINS, np.int64)

    def add(self, ms: float) -> None:
        self.recent.append(ms)
        self.count += 1
        self.total += ms
        position = int(np.log(max(ms, self._LOW_MS) / self._LOW_MS) / np.log(self._RATIO))
        self._histogram[min(position, self._BINS - 1)] += 1

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0-1) in ms: exact while every sample is in the window."""
        if self.count <= self.WINDOW:
            return float(np.percentile(np.asarray(self.recent), 100 * q))
        rank = np.searchsorted(np.cumsum(self._histogram), q * self.count, side="left")
        return float(self._LOW_MS * self._RATIO ** (rank + 0.5))

    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def described(self) -> dict[str, float]:
        """p50, p95 and mean in ms, as the summary reports every stage."""
        return {"p50_ms": self.quantile(0.5), "p95_ms": self.quantile(0.95), "mean_ms": self.mean()}


class StageTimer:
    """Thread-safe record of how long each stage took per frame, in milliseconds, in bounded
    memory (see StageStats)."""

    def __init__(self) -> None:
        self._stats: dict[str, StageStats] = defaultdict(StageStats)
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.frames = 0
        self.last: dict[str, float] = {}
        self.peak_rss_mb: dict[int, float] = {}
        self.rss_mb: dict[int, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self._stats[name].add(ms)
            self.last[name] = ms

    def samples(self, name: str) -> list[float]:
        """The most recent times recorded for ``name`` (up to StageStats.WINDOW), in milliseconds."""
        with self._lock:
            return list(self._stats[name].recent) if name in self._stats else []

    def add_all(self, timings_ms: dict[str, float]) -> None:
        """Record one frame's per-stage times (a SegmentationResult's ``timings_ms``)."""
        for name, ms in timings_ms.items():
            self.add(name, ms)

    def record_peak_rss(self) -> None:
        """Note the process's peak resident memory so far against the frame count: a flat
        series over a long run is the evidence that nothing accumulates per frame. Thinned to
        every other reading when it outgrows RSS_SERIES, so it stays bounded too."""
        # Now first, the peak after it: the kernel batches its RSS counters per CPU and other
        # threads allocate between the two reads, so a peak read first could fall below "now"
        current = current_rss_mb()
        self.rss_mb[self.frames] = current
        self.peak_rss_mb[self.frames] = max(peak_rss_mb(), current)
        if len(self.peak_rss_mb) > RSS_SERIES:
            self.peak_rss_mb, self.rss_mb = _thinned(self.peak_rss_mb), _thinned(self.rss_mb)

    def frame_done(self) -> None:
        with self._lock:
            self.frames += 1

    def fps(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0

    def summary(self) -> dict:
        """Frames, wall seconds, FPS and p50/p95/mean ms per stage seen (and of the latency,
        where a live source recorded it)."""
        with self._lock:
            seen = {name: stats.described() for name, stats in self._stats.items() if stats.count}
        stages = {name: seen[name] for name in STAGES if name in seen}
        latency = seen.get(LATENCY)
        elapsed = time.perf_counter() - self.started
        fps = self.frames / elapsed if elapsed else 0.0
        # FPS x the model's median invoke time: 1.0 means the pipeline adds nothing to the model.
        efficiency = fps * stages["segment"]["p50_ms"] / 1000.0 if "segment" in stages else None
        return {"frames": self.frames, "seconds": elapsed, "fps": fps, "stages": stages,
                **({LATENCY: latency} if latency else {}),
                "pipeline_efficiency": efficiency, "peak_rss_mb": peak_rss_mb(),
                "peak_rss_mb_by_frame": dict(self.peak_rss_mb), "rss_mb_by_frame": dict(self.rss_mb)}


def _thinned(series: dict[int, float]) -> dict[int, float]:
    """The first reading, every other one after it, and the last."""
    kept = list(series.items())
    return dict([kept[0], *kept[2:-1:2], kept[-1]])


def current_rss_mb() -> float:
    """Resident set size now, in MiB (Linux; 0 elsewhere): unlike the peak, it can fall, so a
    series of it shows growth rather than one spike."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 1024.0 / 1024.0


def format_summary(summary: dict) -> str:
    lines = [f"{summary['frames']} frames in {summary['seconds']:.1f} s: {summary['fps']:.1f} FPS, "
             f"peak RSS {summary['peak_rss_mb']:.0f} MiB"
             + (f", FPS x invoke p50 = {summary['pipeline_efficiency']:.2f}" if summary.get("pipeline_efficiency") else ""),
             f"{'stage':<12}{'p50 ms':>9}{'p95 ms':>9}"]
    for name, stats in summary["stages"].items():
        lines.append(f"{name:<12}{stats['p50_ms']:>9.2f}{stats['p95_ms']:>9.2f}")
    if LATENCY in summary:
        stats = summary[LATENCY]
        lines.append(f"latency, a frame's arrival to its result written: p50 {stats['p50_ms']:.1f} ms, "
                     f"p95 {stats['p95_ms']:.1f} ms")
    return "\n".join(lines)


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=1))
