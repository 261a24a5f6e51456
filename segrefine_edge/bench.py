"""Invoke-latency measurement of TFLite models: warm-up, then timed invokes.

Two models compared with ``interleave`` alternate invokes, so machine noise (other jobs,
thermal throttling) hits both equally and the ratio of medians is meaningful on shared hosts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from segrefine_edge.backend import Backend


@dataclass
class LatencyResult:
    """Invoke latency in milliseconds for one model on one runtime/delegate/thread setting."""

    model: str
    runtime: str
    delegate: str
    threads: int
    runs: int
    median_ms: float
    p95_ms: float
    mean_ms: float
    min_ms: float

    def to_json(self) -> dict:
        return asdict(self)


def _random_inputs(backend: Backend, rng: np.random.Generator) -> None:
    for position, info in enumerate(backend.inputs):
        if np.issubdtype(info.dtype, np.integer):
            limits = np.iinfo(info.dtype)
            value = rng.integers(limits.min, limits.max, size=info.shape, endpoint=True).astype(info.dtype)
        else:
            value = rng.random(info.shape, dtype=np.float32)
        backend.set_input(position, value)


def _time_invoke(backend: Backend) -> float:
    start = time.perf_counter()
    backend.invoke()
    return (time.perf_counter() - start) * 1000.0


def _result(backend: Backend, samples: list[float]) -> LatencyResult:
    values = np.asarray(samples)
    return LatencyResult(backend.path.name, backend.runtime, backend.delegate, backend.threads, len(values),
                         float(np.median(values)), float(np.percentile(values, 95)), float(values.mean()),
                         float(values.min()))


def measure(backends: list[Backend], warmup: int = 5, runs: int = 50, seed: int = 0) -> list[LatencyResult]:
    """Warm each backend up, then time ``runs`` invokes of each, interleaved round-robin."""
    rng = np.random.default_rng(seed)
    for backend in backends:
        _random_inputs(backend, rng)
        for _ in range(warmup):
            backend.invoke()
    samples: list[list[float]] = [[] for _ in backends]
    for _ in range(runs):
        for position, backend in enumerate(backends):
            samples[position].append(_time_invoke(backend))
    return [_result(b, s) for b, s in zip(backends, samples, strict=True)]
