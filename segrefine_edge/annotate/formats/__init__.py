"""Export formats of an annotation job, one module each (``NAME`` and ``export(job)``; optional
``check_ready(labels, palette)``, run before any work, and ``NEEDS_IMAGES``), found by discovery
as the output sinks are: adding a format is adding one file here.

Every export is assembled from the job's finished chunks and written atomically, byte for
byte the same however often the job was interrupted and resumed.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

from segrefine_edge.plugins import discover


@cache
def formats() -> dict[str, ModuleType]:
    """Every export format, by name."""
    return discover(__name__, __path__, "NAME")
