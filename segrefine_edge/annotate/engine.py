"""Run an annotation job: plan each input's chunks, segment the sampled frames of the chunks not
yet finished, and commit each chunk whole.

A chunk's output depends on nothing outside it (the pipeline starts fresh at each chunk), so a
resumed job, or chunks run on other machines, give the same bytes as one uninterrupted run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from segrefine_edge.annotate.job import CHUNK_FRAMES, ChunkKey, JobFolder
from segrefine_edge.annotate.review import classes_present, uncertain_share
from segrefine_edge.annotate.sampling import Sampling, histogram, scene_frames
from segrefine_edge.atomic import write_atomic
from segrefine_edge.errors import SourceError
from segrefine_edge.pipeline import Pipeline
from segrefine_edge.pngio import write_labels_png
from segrefine_edge.sources import open_source
from segrefine_edge.timing import StageTimer

VIDEO_MODE_GAP_S = 0.2   # sampled frames further apart than this are segmented as stills (image mode)
_JPEG_QUALITY = 92


@dataclass
class InputPlan:
    """One input (a video, or a folder or glob of images) and the frames to annotate in it."""

    video: str                 # its name in the job: the file or folder stem, made unique
    uri: str
    fps: float
    frames: list[int]          # sampled frame indices, ascending
    chunk_frames: int = CHUNK_FRAMES

    def chunks(self) -> list[list[int]]:
        size = self.chunk_frames
        return [self.frames[i:i + size] for i in range(0, len(self.frames), size)]

    def mode(self) -> str:
        steps = np.diff(self.frames) if len(self.frames) > 1 else np.array([1])
        return "video" if float(np.max(steps)) / self.fps <= VIDEO_MODE_GAP_S else "image"


@dataclass
class JobReport:
    frames: int = 0
    chunks_done: int = 0
    chunks_skipped: int = 0
    failed_inputs: list[str] = field(default_factory=list)
    timer: StageTimer = field(default_factory=StageTimer)


def plan_input(video: str, uri: str, sampling: Sampling, chunk_frames: int = CHUNK_FRAMES) -> InputPlan:
    """The frames to annotate in ``uri``; SourceError when it cannot be read at all."""
    with open_source(uri) as source:
        if source.live:
            raise SourceError(f"{uri} is a live source; annotate reads files, folders and globs")
        fps = source.fps
        if sampling.scenes:
            histograms = [histogram(frame.image) for frame in iter(source.read, None)]
            return InputPlan(video, uri, fps, scene_frames(histograms, fps, sampling.max_gap), chunk_frames)
        total = source.length or sum(1 for _ in iter(source.read, None))
    return InputPlan(video, uri, fps, list(range(0, total, sampling.frame_step(fps))), chunk_frames)


def chunk_frames(uri: str, frames: list[int]) -> list[tuple[int, np.ndarray]]:
    """The frames of one chunk: seek to its first, read forward to its last. Every engine reads a
    chunk this way, so they all see the same pixels."""
    wanted = set(frames)
    found = []
    with open_source(uri) as source:
        source.seek(frames[0])
        for frame in iter(source.read, None):
            if frame.index in wanted:
                found.append((frame.index, frame.image))
            if frame.index >= frames[-1]:
                break
    return found


def segment_chunk(pipeline: Pipeline, plan: InputPlan, key: ChunkKey, frames: list[tuple[int, np.ndarray]],
                  staging: Path, with_images: bool, timer: StageTimer) -> list[dict]:
    """Masks (and frames) of one chunk into ``staging``; returns their records."""
    pipeline.reset()
    records = []
    for index, image in frames:
        result = pipeline.segment(image)
        timer.add_all(result.timings_ms)
        timer.frame_done()
        name = f"frame_{index:06d}"
        write_labels_png(staging / f"{name}.png", result.labels, pipeline.contract.palette_array())
        chunk = f"chunks/{key.video}/{key.chunk:05d}"
        record = {"video": plan.video, "frame": index, "time": round(index / plan.fps, 3),
                  "uncertain_share": round(uncertain_share(result), 6),
                  "classes": classes_present(result.labels, pipeline.contract.labels),
                  "mask": f"{chunk}/{name}.png"}
        if with_images:
            jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])[1]
            write_atomic(staging / f"{name}.jpg", jpeg.tobytes())
            record["image"] = f"{chunk}/{name}.jpg"
        records.append(record)
    write_atomic(staging / "records.json", json.dumps(records, indent=1).encode())
    return records


def pending_chunks(job: JobFolder, plans: list[InputPlan], report: JobReport) -> list[tuple[InputPlan, int]]:
    """The chunks not finished yet, in input and chunk order (the finished ones are counted)."""
    finished = job.open()
    todo = []
    for plan in plans:
        for n, frames in enumerate(plan.chunks()):
            if ChunkKey(plan.video, n) in finished:
                report.chunks_skipped += 1
                report.frames += len(frames)
            else:
                todo.append((plan, n))
    return todo


def process_chunk(job: JobFolder, plan: InputPlan, n: int, wanted: list[int], pipeline: Pipeline, with_images: bool,
                  timer: StageTimer) -> int:
    """Read, segment and commit chunk ``n`` of ``plan`` (its frames ``wanted``); returns its frame count."""
    frames = chunk_frames(plan.uri, wanted)
    key = ChunkKey(plan.video, n)
    staging = job.staging_dir(key)
    segment_chunk(pipeline, plan, key, frames, staging, with_images, timer)
    job.commit(key, staging)
    return len(frames)


def run_local(job: JobFolder, plans: list[InputPlan], make_pipeline: Callable[[str], Pipeline], with_images: bool,
              report: JobReport, progress: Callable[[JobReport, int], None] | None = None) -> JobReport:
    """Every unfinished chunk, in order, on this machine (one pipeline at a time, per input)."""
    total = sum(len(plan.frames) for plan in plans)
    current: tuple[str, Pipeline] | None = None
    for plan, n in pending_chunks(job, plans, report):
        if current is None or current[0] != plan.video:
            if current is not None:
                current[1].close()
            current = (plan.video, make_pipeline(plan.mode()))
        try:
            report.frames += process_chunk(job, plan, n, plan.chunks()[n], current[1], with_images, report.timer)
        except SourceError as exc:
            report.failed_inputs.append(f"{plan.uri}: {exc}")
            continue
        report.chunks_done += 1
        if progress is not None:
            progress(report, total)
    if current is not None:
        current[1].close()
    return report


def unique_names(uris: list[str]) -> list[str]:
    """A job name per input: its stem (a folder's name), suffixed _2, _3 ... when taken."""
    names: list[str] = []
    for uri in uris:
        stem = Path(uri.rstrip("/")).stem.replace("*", "").strip("._") or "input"
        name, n = stem, 2
        while name in names:
            name, n = f"{stem}_{n}", n + 1
        names.append(name)
    return names
