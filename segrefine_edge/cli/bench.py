"""`segrefine-edge bench`: invoke latency per model, runtime, delegate and thread count."""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import click
import numpy as np

from segrefine_edge.backend import DELEGATES, ONNX_RUNTIMES, RUNTIMES, open_backend
from segrefine_edge.bench import LatencyResult, measure
from segrefine_edge.cli.options import resolve_model_path
from segrefine_edge.errors import SourceError
from segrefine_edge.pipeline import DEFAULT_REFINER, Pipeline, PipelineOptions
from segrefine_edge.sinks import check_output_file
from segrefine_edge.sources import open_source
from segrefine_edge.timing import StageTimer


def _bench_pipelines(paths: list[str], refiner: str, frames: str, runtimes, delegates, thread_counts,
                     keyframe_settings, warmup: int, runs: int, json_path: str | None) -> None:
    """Each model's pipeline over the first ``warmup + runs`` frames (video mode), stages timed;
    per keyframes setting, the mean frame too (with keyframes the frame times are two groups, so
    their median says little) and the share of timed frames that were keyframes."""
    reports = []
    for path, runtime, delegate, threads, keyframes in product(paths, runtimes or ("auto",), delegates or ("auto",),
                                                               thread_counts or (2,), keyframe_settings):
        options = PipelineOptions(model=path, refiner=refiner, runtime=runtime, delegate=delegate, threads=threads,
                                  keyframes=keyframes)
        with Pipeline(options) as pipeline, open_source(frames) as source:
            timer = StageTimer()
            segmented = 0
            for index, frame in enumerate(iter(source.read, None)):
                if index == warmup + runs:
                    break
                result = pipeline.segment(frame.image)
                if index >= warmup:
                    timer.add_all(result.timings_ms)
                    timer.add("frame", sum(result.timings_ms.values()))
                    segmented += result.keyframe
            stages = timer.summary()["stages"]
            timed = timer.samples("frame")
            if not timed:
                raise SourceError(f"{frames} has no frames past the {warmup} of --warmup; lower --warmup")
            report = {"pipeline": pipeline.describe(), "keyframes": keyframes, "frames": len(timed),
                      "keyframe_share": segmented / len(timed),
                      "frame_p50_ms": float(np.median(timed)), "frame_mean_ms": float(np.mean(timed)),
                      "stages": stages}
        reports.append(report)
        click.echo(f"{report['pipeline']}, keyframes {keyframes}: {report['frames']} frames, "
                   f"{report['frame_p50_ms']:.2f} ms per frame (p50), {report['frame_mean_ms']:.2f} (mean), "
                   f"{100 * report['keyframe_share']:.0f}% segmented")
        click.echo("\n".join(f"  {name:<12}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}" for name, s in stages.items()))
    if json_path:
        Path(json_path).write_text(json.dumps({"pipelines": reports}, indent=1))


def _table(results: list[LatencyResult]) -> str:
    header = f"{'model':<48}{'runtime':<16}{'delegate':<9}{'thr':>4}{'median ms':>11}{'p95 ms':>9}"
    rows = [f"{r.model[:47]:<48}{r.runtime:<16}{r.delegate:<9}{r.threads:>4}{r.median_ms:>11.2f}{r.p95_ms:>9.2f}"
            for r in results]
    return "\n".join([header, *rows])


@click.command()
@click.argument("models", nargs=-1)
@click.option("--vs", "versus", default=None, help="A second model timed in the same run, interleaved; prints the ratio.")
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(("auto", *RUNTIMES, *ONNX_RUNTIMES)),
              help="Runtime(s) to measure (repeatable; default auto).")
@click.option("--delegate", "delegates", multiple=True, type=click.Choice(DELEGATES),
              help="Delegate(s) to measure (repeatable; default auto).")
@click.option("--threads", "thread_counts", multiple=True, type=click.IntRange(1, 64),
              help="Thread count(s) to measure (repeatable; default 2).")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True)
@click.option("--frames", default=None, help="Time the whole pipeline (every stage) on these frames (video, folder "
              "or glob) instead of the model's invoke on random input.")
@click.option("--refiner", default=DEFAULT_REFINER, show_default=True,
              help="With --frames: the refiner behind each model ('none' for none).")
@click.option("--keyframes", "keyframe_settings", multiple=True, metavar="auto|N",
              help="With --frames: keyframe setting(s) to time (repeatable; default 1), e.g. --keyframes 1 "
                   "--keyframes auto for the speed-up keyframes buy the pipeline alone.")
@click.option("--json", "json_path", default=None, help="Write the results (and the ratio) as JSON.")
def bench(models, versus, runtimes, delegates, thread_counts, warmup, runs, frames, refiner, keyframe_settings,
          json_path) -> None:
    """Time MODELS' invoke after warm-up (default: the shipped model): median and p95 in ms.

    With --vs OTHER, each setting times MODEL and OTHER alternately in one run and prints
    OTHER's median over MODEL's (above 1: MODEL is faster). With --frames, each setting runs
    the pipeline that `stream` runs over real frames and prints p50/p95 per stage.
    """
    paths = list(models) or [resolve_model_path(None)]
    if json_path:
        check_output_file(json_path, "the bench results")
    if frames:
        _bench_pipelines(paths, refiner, frames, runtimes, delegates, thread_counts, keyframe_settings or ("1",),
                         warmup, runs, json_path)
        return
    if keyframe_settings:
        raise click.UsageError("--keyframes times the whole pipeline: pass --frames VIDEO too")
    if versus and len(paths) != 1:
        raise click.UsageError("--vs compares exactly one MODEL with one other")
    results: list[LatencyResult] = []
    ratios = []
    for runtime, delegate, threads in product(runtimes or ("auto",), delegates or ("auto",), thread_counts or (2,)):
        if versus:
            pair = [open_backend(p, runtime, delegate, threads) for p in (paths[0], versus)]
            mine, theirs = measure(pair, warmup, runs)
            results += [mine, theirs]
            ratios.append({"model": mine.model, "vs": theirs.model, "runtime": mine.runtime, "delegate": mine.delegate,
                           "threads": threads, "ratio": theirs.median_ms / mine.median_ms})
        else:
            for path in paths:
                results += measure([open_backend(path, runtime, delegate, threads)], warmup, runs)
    click.echo(_table(results))
    for r in ratios:
        click.echo(f"{r['vs']} / {r['model']} median ratio ({r['runtime']}/{r['delegate']}/{r['threads']} threads): "
                   f"{r['ratio']:.2f}x")
    if json_path:
        Path(json_path).write_text(json.dumps({"results": [r.to_json() for r in results], "ratios": ratios}, indent=1))
