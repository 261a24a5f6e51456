"""`segrefine-edge convert`: export a trained model to TFLite, and check EdgeTPU readiness.

`convert MODEL --to TARGET` needs TensorFlow (imported lazily); `convert check-edgetpu`
reads a .tflite with the runtime alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from segrefine_edge.cli.lazy_tf import require_tensorflow
from segrefine_edge.cli.options import FiniteRange
from segrefine_edge.cli.progress import counter
from segrefine_edge.conversion import ONNX_TARGETS, TARGETS
from segrefine_edge.errors import ModelError, SegrefineError


class QualityError(SegrefineError):
    """The converted model lost more accuracy than allowed."""

    exit_code = 3


class _DefaultToModel(click.Group):
    """`convert MODEL ...` runs the 'model' subcommand; `convert check-edgetpu ...` its own."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["model", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToModel)
def convert() -> None:
    """Export a trained model to TFLite (`convert MODEL --to int8`), or check a .tflite for the
    EdgeTPU (`convert check-edgetpu MODEL.tflite`)."""


def _hw(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not HxW, e.g. 352x480") from None
    return h, w


@convert.command("model")
@click.argument("model_path", metavar="MODEL")
@click.option("--to", "target", type=click.Choice(TARGETS), default="int8", show_default=True)
@click.option("--out", default=None, help="Output .tflite or .onnx (default: MODEL_TARGET.tflite or .onnx beside a "
              "run folder).")
@click.option("--input-size", default=None, help="HxW to export at (default: the run's eval size).")
@click.option("--full-resolution", is_flag=True, help="Keep the in-graph x4 upsample (default: logits at 1/4 size).")
@click.option("--fuse-argmax", is_flag=True, help="Output labels (argmax at 1/4 size) instead of scores.")
@click.option("--calib-data", default=None, help="Calibration images: dataset root or image folder (default: the run's data).")
@click.option("--calib-split", default="train", show_default=True)
@click.option("--calib-count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--val-data", default=None, help="Labelled data to validate on (default: the run's data).")
@click.option("--val-split", default="val", show_default=True)
@click.option("--val-count", type=click.IntRange(0), default=30, show_default=True, help="0 skips validation.")
@click.option("--fuse-refiner", default=None, help="A refiner run to export in one graph behind the segmenter.")
@click.option("--float-layers", type=click.IntRange(0), default=0, show_default=True,
              help="int8: keep the N layers with the largest quantisation error in float.")
@click.option("--max-drop", type=FiniteRange(0), default=0.01, show_default=True,
              help="Fail when mIoU falls by more than this against the float model.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines while calibrating and validating.")
def model_command(model_path, target, out, input_size, full_resolution, fuse_argmax, calib_data, calib_split,
                  calib_count, val_data, val_split, val_count, fuse_refiner, float_layers, max_drop, quiet) -> None:
    """Convert MODEL (a training run folder, .keras file or SavedModel) to TFLite, or to ONNX for
    onnxruntime and TensorRT (--to onnx, or onnx-int8: symmetric int8 Q/DQ, what TensorRT builds)."""
    require_tensorflow("convert")
    from segrefine_edge.conversion.export import ExportOptions, export
    from segrefine_edge.edgetpu import check_edgetpu

    source = Path(model_path)
    if not source.exists():
        raise ModelError(f"{model_path} does not exist; pass a training run folder, .keras file or SavedModel")
    suffix = {"edgetpu": "edgetpu-ready", "onnx": "float", "onnx-int8": "int8"}.get(target, target)
    extension = ".onnx" if target in ONNX_TARGETS else ".tflite"
    out_path = Path(out) if out else (source if source.is_dir() else source.parent) / f"{source.stem}_{suffix}{extension}"
    options = ExportOptions(target, out_path, _hw(input_size), full_resolution, fuse_argmax, calib_data, calib_split,
                            calib_count, val_data, val_split, val_count, float_layers, fuse_refiner,
                            progress=counter(not quiet))
    path, meta, validation = export(source, options)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {target}, input "
               f"{meta['input_hw'][1]}x{meta['input_hw'][0]}, output {meta['output_kind']})")
    if target == "edgetpu":
        click.echo(check_edgetpu(path).format())
        click.echo("compile it for the TPU with deploy/coral/compile.sh (needs edgetpu_compiler)")
    if validation is not None:
        v = validation.to_json()
        click.echo(f"validation on {v['images']} images: float mIoU {v['float_miou']:.4f} BF {v['float_boundary_f']:.4f}"
                   f" | {target} mIoU {v['miou']:.4f} BF {v['boundary_f']:.4f} | drop {v['miou_drop']:+.4f}"
                   f" | agreement {v['pixel_agreement_with_float']:.4f} | invoke {v['invoke_ms_p50']:.1f} ms")
        if validation.miou_drop > max_drop:
            advice = ("try more --calib-count images, or --to onnx (float; TensorRT can still run it in fp16)"
                      if target in ONNX_TARGETS else "try --float-layers 5 (int8) or --to float16")
            raise QualityError(f"{target} loses {validation.miou_drop:.4f} mIoU against float (allowed {max_drop}); "
                               f"{path} is kept for inspection: {advice}")
    sys.stdout.flush()


@convert.command("check-edgetpu")
@click.argument("model_path", metavar="MODEL.tflite")
def check_edgetpu_command(model_path) -> None:
    """List every op, type and shape the EdgeTPU would not map, and where the CPU takes over.

    Exits 1 when something would not be mapped.
    """
    from segrefine_edge.edgetpu import check_edgetpu

    report = check_edgetpu(model_path)
    click.echo(report.format())
    if report.findings and not report.compiled:
        sys.exit(1)


@convert.command("attach-contract")
@click.argument("source", metavar="SOURCE.tflite")
@click.argument("target", metavar="TARGET.tflite")
def attach_contract_command(source, target) -> None:
    """Append SOURCE's model contract to TARGET: edgetpu_compiler rewrites a model without the
    contract `convert` appended, so deploy/coral/compile.sh copies it from the ready model."""
    from segrefine_edge.contract import attach_contract

    attach_contract(Path(source), Path(target))
    click.echo(f"contract of {Path(source).name} appended to {target}")
