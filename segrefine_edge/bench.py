"""Invoke-latency measurement of TFLite models: warm-up, then timed invokes.

Each sample is an invoke and the read of its outputs: a GPU runs asynchronously, and the model's
work is done only when its outputs reach host memory.

Two models compared with ``interleave`` alternate invokes, so machine noise (other jobs,
thermal throttling) hits both equally and the ratio of medians is meaningful on shared hosts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from segrefine_edge.backend import Backend, TensorInfo


@dataclass
class LatencyResult:
    """Invoke latency (outputs read back) in milliseconds for one model on one runtime/delegate/thread setting."""

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


def random_inputs(inputs: list[TensorInfo], rng: np.random.Generator) -> list[np.ndarray]:
    """One random value per input tensor, spanning its dtype's range (pixels for float inputs)."""
    values = []
    for info in inputs:
        if np.issubdtype(info.dtype, np.integer):
            limits = np.iinfo(info.dtype)
            values.append(rng.integers(limits.min, limits.max, size=info.shape, endpoint=True).astype(info.dtype))
        else:
            values.append(rng.random(info.shape, dtype=np.float32))
    return values


def _time_invoke(backend: Backend) -> float:
    # Until its outputs are read, a GPU may still be running the model: invoke only queues the work.
    start = time.perf_counter()
    backend.invoke()
    for position in range(len(backend.outputs)):
        backend.output(position)
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
        for position, value in enumerate(random_inputs(backend.inputs, rng)):
            backend.set_input(position, value)
        for _ in range(warmup):
            backend.invoke()
    samples: list[list[float]] = [[] for _ in backends]
    for _ in range(runs):
        for position, backend in enumerate(backends):
            samples[position].append(_time_invoke(backend))
    return [_result(b, s) for b, s in zip(backends, samples, strict=True)]
