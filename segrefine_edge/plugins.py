"""Discovery of the modules of a package that declare themselves by an attribute: how output
sinks and annotation formats are found, so that adding one is adding one file."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType


def discover(package: str, path: Iterable[str], key: str) -> dict[str, ModuleType]:
    """The modules of ``package`` (at ``path``) that define ``key``, by that attribute's value."""
    found = {}
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{info.name}")
        if hasattr(module, key):
            found[getattr(module, key)] = module
    return found
