"""Export formats of an annotation job, one module each (``NAME`` and ``export(job)``; optional
``check_ready(labels, palette)``, run before any work, and ``NEEDS_IMAGES``), found by discovery
as the output sinks are: adding a format is adding one file here.

Every export is assembled from the job's finished chunks and written atomically, byte for
byte the same however often the job was interrupted and resumed.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType


@cache
def formats() -> dict[str, ModuleType]:
    """Every export format, by name."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME"):
            found[module.NAME] = module
    return found
