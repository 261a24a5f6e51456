"""Per-stage timings of the frame path and the run summary (frames, FPS, p50/p95 per stage)."""

from __future__ import annotations

import json
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
        return {"frames": self.frames, "seconds": elapsed, "fps": self.frames / elapsed if elapsed else 0.0,
                "stages": stages}


def format_summary(summary: dict) -> str:
    lines = [f"{summary['frames']} frames in {summary['seconds']:.1f} s: {summary['fps']:.1f} FPS",
             f"{'stage':<12}{'p50 ms':>9}{'p95 ms':>9}"]
    for name, stats in summary["stages"].items():
        lines.append(f"{name:<12}{stats['p50_ms']:>9.2f}{stats['p95_ms']:>9.2f}")
    return "\n".join(lines)


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=1))
