"""Options shared by the runtime commands: model loading and the model-contract overrides."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from segrefine_edge.backend import DELEGATES, ONNX_RUNTIMES, RUNTIMES
from segrefine_edge.contract import INPUT_RANGES, OUTPUT_KINDS, read_labels_file
from segrefine_edge.errors import ModelError
from segrefine_edge.models import default_model_path
from segrefine_edge.preprocess import FITS
from segrefine_edge.refiner import TEMPORAL_BLEND


def runtime_options(func: Callable) -> Callable:
    """--runtime, --delegate, --threads."""
    func = click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True,
                        help="CPU threads for the interpreter.")(func)
    func = click.option("--delegate", type=click.Choice(DELEGATES), default="auto", show_default=True,
                        help="Accelerator: auto uses the EdgeTPU for _edgetpu models, the GPU for float models "
                        "where LiteRT finds one, else the CPU.")(func)
    func = click.option("--runtime", type=click.Choice(("auto", *RUNTIMES, *ONNX_RUNTIMES)), default="auto", show_default=True,
                        help="Runtime: LiteRT, tflite-runtime or tensorflow.lite for .tflite models; onnxruntime "
                        "or TensorRT (Jetson) for .onnx models.")(func)
    return func


def temporal_blend_option(func: Callable) -> Callable:
    """--temporal-blend: how much of a temporal refiner's output is its flow-aligned last one."""
    return click.option("--temporal-blend", type=FiniteRange(0, 1, max_open=True), default=TEMPORAL_BLEND,
                        show_default=True, help="Share of a temporal refiner's output taken from its previous "
                        "output moved along the optical flow (0: off; more: steadier, edges lag).")(func)


def contract_options(func: Callable) -> Callable:
    """Overrides of the model contract for third-party models."""
    func = click.option("--output-kind", type=click.Choice(OUTPUT_KINDS), default=None,
                        help="What the output holds, if the tensors do not say.")(func)
    func = click.option("--color-order", type=click.Choice(("RGB", "BGR")), default=None,
                        help="Colour order the model expects.")(func)
    func = click.option("--input-range", type=click.Choice(tuple(INPUT_RANGES)), default=None,
                        help="Float input range the model expects (0-255 pixels are scaled to it).")(func)
    func = click.option("--palette", type=click.Path(dir_okay=False), default=None,
                        help="JSON list of [r, g, b] colours, one per class.")(func)
    func = click.option("--labels", type=click.Path(dir_okay=False), default=None,
                        help="Text file with one class name per line.")(func)
    return func


class FiniteRange(click.FloatRange):
    """A FloatRange that also refuses nan and inf, which every comparison lets through."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def read_palette_file(path: str) -> list[tuple[int, int, int]]:
    """A JSON list of [r, g, b] colours, each value 0-255; ModelError names the first bad entry."""
    try:
        colours = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"palette {path} cannot be read as JSON ({exc}); give a list of [r, g, b] colours") from exc
    if not isinstance(colours, list) or not colours:
        raise ModelError(f"palette {path} is not a list of [r, g, b] colours")
    for index, colour in enumerate(colours):
        if (not isinstance(colour, list) or len(colour) != 3
                or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)):
            raise ModelError(f"palette {path}: entry {index} is {colour!r}; each colour must be [r, g, b] with "
                             "whole numbers 0-255")
    return [tuple(colour) for colour in colours]


def contract_overrides(labels_file: str | None, palette_file: str | None, input_range: str | None,
                       color_order: str | None, output_kind: str | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {"input_range": input_range, "color_order": color_order, "output_kind": output_kind}
    if labels_file:
        overrides["labels"] = read_labels_file(labels_file)
    if palette_file:
        overrides["palette"] = read_palette_file(palette_file)
    return overrides


def resolve_model_path(model: str | None) -> str:
    """The model to run: --model, else the default model that ships in the package."""
    if model:
        return model
    path = default_model_path()
    if path is None:
        raise ModelError("no default model ships in this build; pass --model PATH to a .tflite segmenter")
    return str(path)


def fit_option(func: Callable) -> Callable:
    """--fit auto|stretch|pad, shared by stream and eval."""
    return click.option("--fit", type=click.Choice(FITS), default="auto", show_default=True,
                        help="Frames of another shape than the model's input: stretch them to it, pad them "
                             "(keep the aspect ratio, grey around), or auto: pad when the aspect ratios "
                             "differ by more than 10% (16:9 and wider footage into the CamVid model).")(func)


def keyframes_option(func: Callable) -> Callable:
    """--keyframes auto|N, shared by stream, eval and annotate."""
    return click.option("--keyframes", default="1", show_default=True, metavar="auto|N",
                        help="Run the segmenter on every Nth frame, or 'auto' when the flow stops following the "
                             "scene; between keyframes the temporal refiner carries the scores along the flow.")(func)
