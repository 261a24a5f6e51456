"""Where results go, behind one interface, built by one factory from what the user typed.

``open_sink('out.mp4', context)`` gives a video, ``'masks/'`` a folder of mask PNGs,
``'stats.json'`` the run's summary, ``'display'`` a window. Each module of this package that
defines ``KIND``, ``accepts(spec)`` and ``open_sink(spec, context)`` is an output format:
adding one is adding one file here.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

from segrefine_edge.errors import SinkError
from segrefine_edge.plugins import discover
from segrefine_edge.sinks.base import (
    Sink,
    SinkContext,
    SinkItem,
    check_not_an_input,
    check_output_file,
    check_writable_dir,
    expand_start,
)

__all__ = ["Sink", "SinkContext", "SinkItem", "check_not_an_input", "check_output_file", "check_writable_dir",
           "expand_start", "formats", "open_sink"]


@cache
def formats() -> dict[str, ModuleType]:
    """Every output format of this package, by kind."""
    return discover(__name__, __path__, "KIND")


def open_sink(spec: str, context: SinkContext, kind: str | None = None) -> Sink:
    """The output ``spec`` names (``kind`` forces a format, e.g. 'masks' for a folder name with a dot)."""
    known = formats()
    if spec != "display":
        check_not_an_input(spec, context.inputs, "output")
    if kind is not None:
        if kind not in known:
            raise SinkError(f"unknown output kind '{kind}'; known: {', '.join(known)}")
        return known[kind].open_sink(spec, context)
    for module in known.values():
        if module.accepts(spec):
            return module.open_sink(spec, context)
    raise SinkError(f"cannot tell what to write to '{spec}': name a video (.mp4, .avi), a folder for masks "
                    "(masks/), a .json file for stats, or 'display'")
