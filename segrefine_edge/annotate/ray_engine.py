"""The same annotation job on a Ray cluster (the 'ray' extra: ``ray[data]``).

Work items are (input, chunk) pairs; Ray Data's ``map_batches`` hands them to a fixed pool of
actors, each holding its own pipeline (the model is loaded once per actor, in its constructor).
An actor reads its chunk (seek, read forward), segments it and commits it into the job folder,
which every node must see (a shared filesystem), exactly as the local engine does, so the
outputs are the same bytes. Actors ask for a fraction of a CPU: on a small machine, whole CPUs
for them would starve the tasks that feed them.

Point it at a cluster with ``RAY_ADDRESS`` (``ray start --head`` on one machine, ``ray start
--address=HEAD:6379`` on the others); without it, Ray starts a local one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from segrefine_edge.annotate.engine import InputPlan, JobReport, pending_chunks, process_chunk
from segrefine_edge.annotate.job import JobFolder
from segrefine_edge.errors import MissingExtraError, SourceError
from segrefine_edge.pipeline import Pipeline, PipelineOptions


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingExtraError("--engine ray needs Ray Data: pip install 'segrefine-edge[ray]'") from exc
    return ray


def check_ready() -> None:
    """Before any work: the extra is installed."""
    _ray()


class ChunkWorker:
    """A Ray Data callable class: one pipeline per actor and mode, chunks committed as they finish."""

    def __init__(self, job_path: str, spec: dict[str, Any], options: dict[str, Any], with_images: bool) -> None:
        self.job = JobFolder(job_path, spec)
        self.options, self.with_images = options, with_images
        self.pipelines: dict[str, Pipeline] = {}

    def _pipeline(self, mode: str) -> Pipeline:
        if mode not in self.pipelines:
            self.pipelines[mode] = Pipeline(PipelineOptions(**{**self.options, "mode": mode}))
        return self.pipelines[mode]

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from segrefine_edge.timing import StageTimer

        results: dict[str, list] = {"video": [], "chunk": [], "frames": [], "error": [], "segment_ms": []}
        for index in range(len(batch["video"])):
            wanted = [int(f) for f in batch["frames"][index]]
            plan = InputPlan(batch["video"][index], batch["uri"][index], float(batch["fps"][index]), wanted)
            n = int(batch["chunk"][index])
            timer = StageTimer()
            try:
                pipeline = self._pipeline(str(batch["mode"][index]))
                frames, error = process_chunk(self.job, plan, n, wanted, pipeline, self.with_images, timer), ""
            except SourceError as exc:
                frames, error = 0, f"{plan.uri}: {exc}"
            segment = timer.summary()["stages"].get("segment", {}).get("mean_ms", 0.0)
            for key, value in (("video", plan.video), ("chunk", n), ("frames", frames), ("error", error),
                               ("segment_ms", segment)):
                results[key].append(value)
        return results


def run_ray(job: JobFolder, plans: list[InputPlan], options: PipelineOptions, with_images: bool, report: JobReport,
            actors: int = 2, cpus_per_actor: float = 0.5,
            progress: Callable[[JobReport, int], None] | None = None) -> JobReport:
    """Every unfinished chunk on Ray: ``actors`` actors of ``cpus_per_actor`` CPUs each."""
    ray = _ray()
    todo = pending_chunks(job, plans, report)
    if not todo:
        return report
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    items = [{"video": plan.video, "uri": plan.uri, "fps": plan.fps, "frames": plan.chunks()[n], "chunk": n,
              "mode": plan.mode()} for plan, n in todo]
    # plain values an actor can rebuild the options from (annotate sets no contract overrides)
    fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name != "contract_overrides"}
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        ChunkWorker, fn_constructor_args=(str(job.path), job.spec, fields, with_images), batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor)
    total = sum(len(plan.frames) for plan in plans)
    for row in dataset.iter_rows():
        if row["error"]:
            report.failed_inputs.append(row["error"])
            continue
        report.frames += int(row["frames"])
        report.chunks_done += 1
        for _ in range(int(row["frames"])):
            report.timer.add("segment", float(row["segment_ms"]))
            report.timer.frame_done()
        if progress is not None:
            progress(report, total)
    return report
