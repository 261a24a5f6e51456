"""Per-stage timings of the frame path and the run summary (frames, FPS, p50/p95 per stage)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

STAGES = ("capture", "preprocess", "segment", "refine", "postprocess", "render", "write")


class StageTimer:
    """Thread-safe record of how long each stage took per frame, in milliseconds."""

    def __init__(self) -> None:
        self._samples: dict[str, list[float]] = defaultdict(list)
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.frames = 0
        self.last: dict[str, float] = {}
        self.peak_rss_mb: dict[int, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self._samples[name].append(ms)
            self.last[name] = ms

    def samples(self, name: str) -> list[float]:
        """Every time recorded for ``name``, in milliseconds."""
        with self._lock:
            return list(self._samples.get(name, []))

    def add_all(self, timings_ms: dict[str, float]) -> None:
        """Record one frame's per-stage times (a SegmentationResult's ``timings_ms``)."""
        for name, ms in timings_ms.items():
            self.add(name, ms)

    def record_peak_rss(self) -> None:
        """Note the process's peak resident memory so far against the frame count: a flat
        series over a long run is the evidence that nothing accumulates per frame."""
        self.peak_rss_mb[self.frames] = peak_rss_mb()

    def frame_done(self) -> None:
        with self._lock:
            self.frames += 1

    def fps(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.frames / elapsed if elapsed > 0 else 0.0

    def summary(self) -> dict:
        """Frames, wall seconds, FPS and p50/p95/mean ms per stage seen."""
        with self._lock:
            stages = {
                name: {
                    "p50_ms": float(np.percentile(values, 50)),
                    "p95_ms": float(np.percentile(values, 95)),
                    "mean_ms": float(np.mean(values)),
                }
                for name in STAGES
                if (values := self._samples.get(name))
            }
        elapsed = time.perf_counter() - self.started
        fps = self.frames / elapsed if elapsed else 0.0
        # FPS x the model's median invoke time: 1.0 means the pipeline adds nothing to the model.
        efficiency = fps * stages["segment"]["p50_ms"] / 1000.0 if "segment" in stages else None
        return {"frames": self.frames, "seconds": elapsed, "fps": fps, "stages": stages,
                "pipeline_efficiency": efficiency, "peak_rss_mb": peak_rss_mb(),
                "peak_rss_mb_by_frame": dict(self.peak_rss_mb)}


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
    return "\n".join(lines)


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=1))
