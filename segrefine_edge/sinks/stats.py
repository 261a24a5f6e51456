"""The run's summary (frames, FPS, p50/p95 per stage) as JSON, written when the run ends."""

from __future__ import annotations

import json
from pathlib import Path

from segrefine_edge.atomic import write_atomic
from segrefine_edge.sinks.base import ClosingSink, SinkContext, SinkItem, check_output_file

KIND = "stats"


def accepts(spec: str) -> bool:
    return Path(spec).suffix.lower() == ".json"


def open_sink(spec: str, context: SinkContext) -> StatsSink:
    return StatsSink(spec, context)


class StatsSink(ClosingSink):
    """Checked before the first frame, so a bad path fails before the work rather than after it;
    written through a temporary name, so a reader never sees half a file."""

    needs_view = False

    def __init__(self, path: str | Path, context: SinkContext) -> None:
        self.path = check_output_file(path, "the stats")
        self.summary = context.summary

    def write(self, item: SinkItem) -> None:
        """Nothing per frame: the summary is read at the end."""

    def close(self) -> None:
        write_atomic(self.path, json.dumps(self.summary(), indent=1).encode())
