"""`segrefine-edge annotate`: first-draft masks for every sampled frame of hours of video, in the
formats labelling tools import, ranked by how much a human is needed; resumable."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import click

from segrefine_edge.annotate.engine import JobReport, plan_input, run_local, unique_names
from segrefine_edge.annotate.formats import formats
from segrefine_edge.annotate.formats.base import ExportJob
from segrefine_edge.annotate.job import CHUNK_FRAMES, JobFolder, file_hash
from segrefine_edge.annotate.review import review_csv
from segrefine_edge.annotate.sampling import Sampling
from segrefine_edge.atomic import write_atomic
from segrefine_edge.cli.options import FiniteRange, runtime_options, temporal_blend_option
from segrefine_edge.errors import SegrefineError, SourceError
from segrefine_edge.pipeline import DEFAULT_REFINER, Pipeline, PipelineOptions, resolve_refiner
from segrefine_edge.sinks import check_not_an_input, check_writable_dir
from segrefine_edge.sources import open_source, redact


def _models_spec(pipeline: Pipeline) -> dict:
    refiner = getattr(pipeline.refiner, "backend", None)
    return {"model": pipeline.segmenter.backend.path.name, "model_sha256": file_hash(pipeline.segmenter.backend.path),
            "refiner": pipeline.refiner.name,
            "refiner_sha256": file_hash(refiner.path) if refiner is not None else None,
            "labels": pipeline.contract.labels, "palette": pipeline.contract.palette_array().tolist()}


def _image_mode_refiner(options: PipelineOptions) -> str:
    """The refiner that inputs sampled too sparsely for video mode run (the default runs none there),
    named in the job beside the video-mode one the probe pipeline describes."""
    spec = resolve_refiner(dataclasses.replace(options, mode="image"))
    return Path(spec).stem if spec else "none"


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", "out_dir", required=True, help="Job folder: resumable; rerun the same command to continue.")
@click.option("--format", "formats_wanted", multiple=True, default=("png",), show_default=True,
              type=click.Choice(sorted(formats())), help="Export format (repeatable).")
@click.option("--every", type=click.IntRange(1), default=None, help="Annotate every Nth frame.")
@click.option("--fps", "sample_fps", type=FiniteRange(0, min_open=True), default=None,
              help="Annotate this many frames per second of video.")
@click.option("--scenes", is_flag=True, help="Annotate each scene change, and at least one frame every --max-gap s.")
@click.option("--max-gap", type=FiniteRange(0, min_open=True), default=10.0, show_default=True,
              help="With --scenes: seconds between frames at most.")
@click.option("--model", "-m", default=None, help="Segmenter .tflite (default: the shipped CamVid model).")
@click.option("--refiner", default=None, help="Refiner .tflite or 'guided-filter' (default: as in stream for frames at most 0.2 s "
              "apart, none for sparser samples, which run as stills).")
@click.option("--no-refiner", is_flag=True)
@temporal_blend_option
@runtime_options
@click.option("--chunk", "chunk_frames", type=click.IntRange(1), default=CHUNK_FRAMES, show_default=True,
              help="Sampled frames per chunk, the unit of work a kill can lose.")
@click.option("--engine", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="local: this machine; ray: a Ray cluster (RAY_ADDRESS, else a local one; the 'ray' extra).")
@click.option("--actors", type=click.IntRange(1), default=2, show_default=True, help="--engine ray: actors.")
@click.option("--actor-cpus", type=FiniteRange(0, min_open=True), default=0.5, show_default=True,
              help="--engine ray: CPUs each actor asks for (fractions leave room for the tasks that feed them).")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
def annotate(inputs, out_dir, formats_wanted, every, sample_fps, scenes, max_gap, model, refiner, no_refiner,
             temporal_blend, runtime, delegate, threads, chunk_frames, engine, actors, actor_cpus, quiet) -> None:
    """Annotate INPUT... (videos, image folders or globs) into --out: masks in every --format,
    manifest.json and review.csv (frames ranked by the share of uncertain pixels).

    Killed, rebooted or out of disk, the same command resumes where the job stopped; the
    outputs are the same bytes as an uninterrupted run's.
    """
    sampling = Sampling(every=every, fps=sample_fps, scenes=scenes, max_gap=max_gap)
    out = Path(out_dir)
    options = PipelineOptions(model=model, refiner="none" if no_refiner else (refiner or DEFAULT_REFINER),
                              runtime=runtime, delegate=delegate, threads=threads, temporal_blend=temporal_blend)
    if engine == "ray":
        from segrefine_edge.annotate import ray_engine

        ray_engine.check_ready()
    probe = Pipeline(options)
    for name in formats_wanted:
        check = getattr(formats()[name], "check_ready", None)
        if check is not None:
            check(probe.contract.labels, probe.contract.palette_array())
    names = unique_names(list(inputs))
    plans, failed = [], []
    for name, uri in zip(names, inputs, strict=True):
        try:
            with open_source(uri) as source:
                check_not_an_input(out, source.inputs(), "--out")
            plans.append(plan_input(name, uri, sampling, chunk_frames))
        except SourceError as exc:
            failed.append(f"{redact(uri)}: {exc}")
    if not plans:
        raise SourceError(f"no input could be read ({'; '.join(failed)})")
    check_writable_dir(out, "the annotations")
    with_images = any(getattr(formats()[f], "NEEDS_IMAGES", False) for f in formats_wanted)
    spec = {**_models_spec(probe), "inputs": [{"name": p.video, "uri": redact(p.uri)} for p in plans],
            "sampling": sampling.to_json(), "chunk_frames": chunk_frames, "frames_written": "images" if with_images else "masks"}
    if any(plan.mode() == "image" for plan in plans):
        spec["image_mode_refiner"] = _image_mode_refiner(options)
    job = JobFolder(out, spec)
    started = time.monotonic()

    def make_pipeline(mode: str) -> Pipeline:
        return Pipeline(dataclasses.replace(options, mode=mode))

    def progress(report: JobReport, total: int) -> None:
        if not quiet and sys.stderr.isatty():
            rate = report.timer.frames / max(time.monotonic() - started, 1e-6)
            left = (total - report.frames) / rate if rate else 0
            click.echo(f"\r{report.frames}/{total} frames  {rate:.1f} FPS  ETA {int(left) // 60}:{int(left) % 60:02d}",
                       err=True, nl=False)

    report = JobReport(failed_inputs=failed)
    if engine == "ray":
        ray_engine.run_ray(job, plans, options, with_images, report, actors, actor_cpus, progress)
    else:
        run_local(job, plans, make_pipeline, with_images, report, progress)
    if not quiet and sys.stderr.isatty():
        click.echo("", err=True)
    records = job.records()
    export = ExportJob(out, records, probe.contract.labels, probe.contract.palette_array(), spec["model"])
    for name in formats_wanted:
        formats()[name].export(export)
    write_atomic(out / "manifest.json", json.dumps({"job": spec, "frames": records}, indent=1).encode())
    write_atomic(out / "review.csv", review_csv(records).encode())
    summary = report.timer.summary()
    seconds = time.monotonic() - started
    click.echo(f"{len(records)} frames annotated ({report.chunks_done} chunks now, {report.chunks_skipped} already "
               f"done) in {seconds:.1f} s: {report.timer.frames / seconds if seconds else 0:.1f} FPS"
               + (f", FPS x invoke p50 = {summary['pipeline_efficiency']:.2f}" if summary.get("pipeline_efficiency")
                  else ""))
    for stage, stats in summary["stages"].items():
        click.echo(f"  {stage:<12}{stats['p50_ms']:>9.2f} ms p50")
    click.echo(f"outputs: {', '.join(formats_wanted)}, manifest.json, review.csv in {out}")
    if report.failed_inputs:
        for line in dict.fromkeys(report.failed_inputs):
            click.echo(f"skipped input: {line}", err=True)
        raise SegrefineError(f"{len(report.failed_inputs)} input(s) could not be annotated (listed above); the others "
                             "are complete")
