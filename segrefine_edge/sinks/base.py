"""What every output shares: the per-frame item a sink receives, what it knows of the run,
and the protocol it implements."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from segrefine_edge.errors import SinkError

if TYPE_CHECKING:
    from segrefine_edge.pipeline import SegmentationResult
    from segrefine_edge.sources import Frame


@dataclass(frozen=True)
class SinkItem:
    """One processed frame: the frame, its result and, when a sink asked for it, the rendered view."""

    frame: Frame
    result: SegmentationResult
    view: np.ndarray | None = None


@dataclass(frozen=True)
class SinkContext:
    """What a sink may need to know before the first frame.

    ``frame_size`` and ``view_size`` are (width, height); ``palette`` is RGB, one row per
    class; ``summary`` returns the run's summary so far (frames, FPS, stages); ``inputs`` are
    the files the run reads; ``segment_seconds`` splits a video output into files that long.
    """

    fps: float
    frame_size: tuple[int, int]
    view_size: tuple[int, int]
    palette: np.ndarray
    labels: list[str]
    summary: Callable[[], dict]
    inputs: tuple[Path, ...] = ()     # the files being read: no output may be, or hold, one of them
    segment_seconds: float | None = None   # video: a new file every this many seconds of frames


class Sink(Protocol):
    """An output. ``needs_view``: whether ``write`` uses ``item.view`` (the rendered picture),
    so the runner renders only when some sink does. ``close`` leaves everything written so far
    valid; a sink is a context manager that closes on exit."""

    needs_view: bool

    def write(self, item: SinkItem) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sink: ...

    def __exit__(self, *exc: object) -> None: ...


class ClosingSink:
    """Mixin: the context-manager half of the protocol."""

    def __enter__(self) -> ClosingSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing buffered by default."""


def check_writable_dir(folder: Path, purpose: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there, before any work starts."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe"):
            pass
    except OSError as exc:
        raise SinkError(f"cannot write {purpose} in {folder}: it is not a folder this user can write to "
                        f"({exc.strerror or exc}); choose another path") from exc


def check_output_file(path: str | Path, purpose: str) -> Path:
    """Refuse a folder, and prove the file's folder is writable, before any work starts (an error
    after an hour of work loses the hour)."""
    path = Path(path)
    if path.is_dir():
        raise SinkError(f"{path} is a folder; name a file for {purpose}")
    check_writable_dir(path.parent if str(path.parent) else Path("."), purpose)
    return path


def check_not_an_input(output: str | Path, inputs: Iterable[Path], purpose: str) -> None:
    """Refuse an output that is one of the inputs, or a folder that holds one (masks named after
    their images would land on them)."""
    target = Path(output).resolve()
    for item in inputs:
        source = Path(item).resolve()
        if source == target or target in source.parents:
            raise SinkError(f"{purpose} {output} would overwrite the input {item}; write it somewhere else")


START_FIELD = "{start}"


def expand_start(spec: str | None, started: datetime) -> str | None:
    """``spec`` with ``{start}`` replaced by the start time (UTC, 20261202-153000), numbered -2, -3...
    when that name exists: a service restarted after a crash writes beside what it wrote before,
    never over it."""
    if not spec or START_FIELD not in spec:
        return spec
    stamp = started.astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidate, number = spec.replace(START_FIELD, stamp), 1
    while Path(candidate).exists():
        number += 1
        candidate = spec.replace(START_FIELD, f"{stamp}-{number}")
    return candidate
