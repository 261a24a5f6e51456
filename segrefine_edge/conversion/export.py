"""One conversion end to end: load, (fuse argmax), convert, embed the contract, validate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

from segrefine_edge.atomic import write_atomic
from segrefine_edge.contract import embed_metadata
from segrefine_edge.conversion import ONNX_TARGETS
from segrefine_edge.conversion.edge_graph import ArgMaxLabels, edge_friendly
from segrefine_edge.conversion.quantize import (
    Progress,
    calibration_images,
    input_names,
    refiner_calibration,
    to_tflite,
)
from segrefine_edge.conversion.source import ExportSource, fuse_refiner, load_source
from segrefine_edge.conversion.validate import Validation, validate
from segrefine_edge.datasets import dataset_classes
from segrefine_edge.errors import DatasetError, ModelError


@dataclass
class ExportOptions:
    target: str
    out: Path
    input_hw: tuple[int, int] | None = None
    full_resolution: bool = False
    fuse_argmax: bool = False
    calib_data: str | None = None
    calib_split: str = "train"
    calib_count: int = 200
    val_data: str | None = None
    val_split: str = "val"
    val_count: int = 30
    float_layers: int = 0
    fuse_refiner: str | None = None
    progress: Progress | None = None     # told (what, done, total) while calibrating and validating


def _with_argmax(model: keras.Model) -> keras.Model:
    """Labels instead of scores: argmax at the decoder's resolution; the runtime
    upsamples labels with nearest neighbour, so the graph never resizes at full size."""
    labels = ArgMaxLabels(name="labels")(model.outputs[0])
    return keras.Model(model.inputs, labels, name=f"{model.name}_argmax")


def metadata(source: ExportSource, options: ExportOptions, model: keras.Model,
             refiner_inputs: list[str] | None = None) -> dict:
    """The model contract the runtime reads, plus provenance under 'info'."""
    hw = tuple(int(d) for d in model.inputs[0].shape[1:3])
    info = {"target": options.target, "exported_from": source.name, "data": source.data,
            "output_resolution": f"1/{hw[0] // int(model.outputs[0].shape[1])}",
            "float_layers": options.float_layers}
    if source.recipe:
        info["recipe"] = source.recipe
    return {
        "name": f"{source.name}_{options.target}", "role": source.role, "labels": source.labels or None,
        "palette": source.palette, "void": source.void, "input_hw": list(hw), "color_order": "RGB",
        "input_range": "0,255", "output_kind": "labels" if options.fuse_argmax else "logits",
        "refiner_inputs": refiner_inputs, "info": info,
    }


def export(model_path: str | Path, options: ExportOptions) -> tuple[Path, dict, Validation | None]:
    """Convert ``model_path`` as ``options`` say; returns the written file, its metadata, the validation."""
    source = load_source(model_path, options.input_hw, options.full_resolution)
    if options.fuse_refiner:
        source = fuse_refiner(source, options.fuse_refiner)
    model = edge_friendly(source.model)
    model = _with_argmax(model) if options.fuse_argmax else model
    hw = tuple(int(d) for d in model.inputs[0].shape[1:3])
    calib_data = options.calib_data or source.data
    if options.target in ONNX_TARGETS:
        # the training graph, not the EdgeTPU rewrite: tf2onnx traces the rewrite's dilated
        # depthwise op as if undilated (agreement with the float model fell to 0.92)
        onnx_model = _with_argmax(source.model) if options.fuse_argmax else source.model
        meta = _export_onnx(source, onnx_model, options, calib_data, hw)
        return options.out, meta, _validate(source, options)
    calibration = None
    if options.target in ("int8", "edgetpu"):
        calibration = (refiner_calibration(calib_data, options.calib_split, source.calibration_inputs,
                                           options.calib_count, hw, temporal=len(model.inputs) == 3)
                       if source.role == "refiner"
                       else calibration_images(calib_data, options.calib_split, options.calib_count, hw))
    tflite = to_tflite(model, options.target, calibration, progress=options.progress, labels_output=options.fuse_argmax,
                       float_layers=options.float_layers, signed_inputs=source.role == "refiner")
    meta = metadata(source, options, model, input_names(tflite) if source.role == "refiner" else None)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(options.out, embed_metadata(tflite, meta))
    if source.role == "refiner":
        return options.out, meta, None          # refiners are validated in the pipeline, with `eval --refiner`
    result = _validate(source, options)
    if result is not None:
        meta["info"]["validation"] = result.to_json()
        write_atomic(options.out, embed_metadata(tflite, meta))
    return options.out, meta, result


def _validate(source: ExportSource, options: ExportOptions) -> Validation | None:
    """The written model against the float Keras one on labelled images, through the runtime."""
    val_data = options.val_data or source.data
    if not (val_data and options.val_count > 0 and Path(val_data).is_dir()):
        return None
    classes = dataset_classes(val_data, source.labels)
    return validate(source.model, options.out, val_data, options.val_split, options.val_count, classes,
                    progress=options.progress)


def _export_onnx(source: ExportSource, model: keras.Model, options: ExportOptions, calib_data: str | None,
                 hw: tuple[int, int]) -> dict:
    """ONNX through a SavedModel; for onnx-int8, symmetric Q/DQ calibrated on the TFLite int8's images."""
    from segrefine_edge.conversion.onnx_export import keras_to_onnx, quantize_qdq, with_contract

    if source.role == "refiner":
        raise ModelError("ONNX export takes segmenters; a refiner runs as TFLite beside an ONNX segmenter")
    meta = metadata(source, options, model)
    proto = keras_to_onnx(model)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    if options.target == "onnx":
        write_atomic(options.out, with_contract(proto, meta))
        return meta
    if not calib_data:
        raise DatasetError("onnx-int8 needs calibration images; pass --calib-data")
    quantize_qdq(proto.SerializeToString(), calibration_images(calib_data, options.calib_split, options.calib_count, hw),
                 options.out, meta)
    return meta
