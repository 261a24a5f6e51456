"""Speed benchmarks (pytest-benchmark), kept apart from the unit tests: run them with
``python -m pytest tests/benchmarks --benchmark-only``. Nothing here asserts a time; the
figures and ratios go to the README with this command behind them."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from segrefine_edge.backend import open_backend
from segrefine_edge.models import default_model_path
from segrefine_edge.pipeline import Pipeline, PipelineOptions
from segrefine_edge.postprocess import labels_at
from segrefine_edge.render import Renderer, RenderOptions
from segrefine_edge.runner import Outputs, RunLimits, run_stream
from segrefine_edge.sinks.video import VideoFileSink
from segrefine_edge.sources import open_source


def _models(peers: Path) -> dict[str, Path]:
    models = {"coral_cityscapes": peers / "coral" / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite",
              "coral_pascal_dm05": peers / "coral" / "deeplabv3_mnv2_dm05_pascal_quant.tflite"}
    if default_model_path() is not None:
        models["segrefine_camvid_int8"] = default_model_path()
    return models


@pytest.mark.parametrize("name", ["coral_cityscapes", "coral_pascal_dm05", "segrefine_camvid_int8"])
def test_invoke(benchmark, peers: Path, name: str):
    models = _models(peers)
    if name not in models:
        pytest.skip("no default model ships in this build")
    backend = open_backend(models[name], threads=2)
    info = backend.inputs[0]
    backend.set_input(0, np.random.default_rng(0).integers(0, 255, info.shape, dtype=np.uint8).astype(info.dtype))
    benchmark.pedantic(backend.invoke, warmup_rounds=5, rounds=50)


def test_postprocess_on_vtest(benchmark, vtest: Path):
    """The default pipeline's scores for a vtest.avi frame (the temporal refiner's 8-bit probabilities
    at 176x240) to labels at the frame's 768x576: the issue's postprocess stage alone."""
    with open_source(str(vtest)) as source, Pipeline(PipelineOptions(mode="video")) as pipeline:
        for _ in range(3):
            image = source.read().image
            result = pipeline.segment(image)
    size = (image.shape[1], image.shape[0])
    benchmark.pedantic(labels_at, args=(result.scores, size), warmup_rounds=5, rounds=100)


def test_render_overlay_on_vtest(benchmark, vtest: Path):
    """The writer thread's render stage alone: the default overlay (colours, blend, legend) of the
    default pipeline's labels on a 768x576 vtest.avi frame."""
    with open_source(str(vtest)) as source, Pipeline(PipelineOptions(mode="video")) as pipeline:
        for _ in range(3):
            image = source.read().image
            labels = pipeline.segment(image).labels
        renderer = Renderer(pipeline.contract.labels, pipeline.contract.palette_array(), RenderOptions())
    benchmark.pedantic(renderer.render, args=(image, labels), warmup_rounds=5, rounds=100)


def _stream_vtest(pipeline: Pipeline, vtest: Path, out: Path, frames: int) -> dict:
    """``stream``'s loop on vtest.avi, headless, writing the overlay video: the summary."""
    with open_source(str(vtest)) as source:
        contract = pipeline.contract
        renderer = Renderer(contract.labels, contract.palette_array(), RenderOptions())
        video = VideoFileSink(out, source.fps, renderer.output_size(source.size))
        outputs = Outputs([video], renderer)
        timer = run_stream(source, pipeline, outputs, RunLimits(max_frames=frames), threading.Event())
    return timer.summary()


def test_pipeline_on_vtest(benchmark, peers: Path, vtest: Path, tmp_path: Path):
    """The issue's setting: Coral Cityscapes on vtest.avi, headless, writing the overlay video."""
    pipeline = Pipeline(PipelineOptions(model=_models(peers)["coral_cityscapes"], refiner=None, threads=2))
    summary = benchmark.pedantic(_stream_vtest, args=(pipeline, vtest, tmp_path / "out.mp4", 200),
                                 rounds=1, iterations=1)
    benchmark.extra_info.update(fps=summary["fps"], pipeline_efficiency=summary["pipeline_efficiency"],
                                invoke_p50_ms=summary["stages"]["segment"]["p50_ms"])


@pytest.mark.parametrize("keyframes", ["1", "auto"])
def test_default_pipeline_on_vtest_by_keyframes(benchmark, vtest: Path, tmp_path: Path, keyframes: str):
    """The keyframes issue's comparison: the default pipeline (shipped segmenter and temporal
    refiner) on 400 frames of vtest.avi writing the overlay video, ``--keyframes 1`` against
    ``auto``; the ratio of the two FPS figures is the issue's speed-up."""
    if default_model_path() is None:
        pytest.skip("no default model ships in this build")
    pipeline = Pipeline(PipelineOptions(mode="video", keyframes=keyframes))
    summary = benchmark.pedantic(_stream_vtest, args=(pipeline, vtest, tmp_path / "out.mp4", 400),
                                 rounds=1, iterations=1)
    benchmark.extra_info.update(fps=summary["fps"], keyframe_share=pipeline.keyframe_share(),
                                segment_mean_ms=summary["stages"]["segment"]["mean_ms"],
                                refine_mean_ms=summary["stages"]["refine"]["mean_ms"])


def test_memory_stays_flat_over_a_long_run(benchmark, peers: Path, vtest: Path, tmp_path: Path):
    """Peak RSS at frame 1,000 against the last reading of a looped run writing video: the
    summary keeps bounded statistics, so nothing may grow per frame (issue: within 2 MiB from
    frame 1,000 to 30,000; this shorter run records the same readings for the benchmark log)."""
    import json
    import subprocess
    import sys

    stats = tmp_path / "soak.json"
    model = peers / "coral" / "deeplabv3_mnv2_dm05_pascal_quant.tflite"

    def run() -> dict:
        subprocess.run([sys.executable, "-m", "segrefine_edge", "stream", str(vtest), "--loop", "--max-frames", "5000",
                        "-m", str(model), "--no-display", "--quiet", "--out", str(tmp_path / "soak.mp4"),
                        "--stats-json", str(stats)], check=True, capture_output=True, timeout=1800)
        return json.loads(stats.read_text())

    summary = benchmark.pedantic(run, rounds=1, iterations=1)
    series = {int(k): v for k, v in summary["peak_rss_mb_by_frame"].items()}
    current = {int(k): v for k, v in summary["rss_mb_by_frame"].items()}
    benchmark.extra_info.update(rss_mb_at_1000=current[1000], rss_mb_last=current[max(current)],
                                peak_rss_mb_at_1000=series[1000], peak_rss_mb_last=series[max(series)],
                                growth_mb=current[max(current)] - current[1000], frames=summary["frames"])
