"""Keras model -> ONNX (float), and ONNX -> int8 with explicit, symmetric Q/DQ nodes: what TensorRT builds.

The route is the one that works under Keras 3: the model is exported as a SavedModel and its
serving function is traced by tf2onnx (``tf2onnx.convert.from_keras`` fails on Keras 3 models).
The contract travels as ONNX metadata (``metadata_props``), the same JSON a .tflite carries in
its appended zip, so a runtime reads both the same way.

TFLite's int8 uses asymmetric activations (a zero point per tensor), which TensorRT rejects,
and TensorRT 10 deprecated implicit calibration. ``onnxruntime.quantization`` writes explicit
QuantizeLinear/DequantizeLinear pairs instead: int8 weights per output channel and activations
with zero zero-points, calibrated on the same images as the TFLite int8 model.
"""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segrefine_edge.atomic import write_atomic
from segrefine_edge.errors import ModelError
from segrefine_edge.onnx_backend import CONTRACT_KEY

if TYPE_CHECKING:
    import keras

OPSET = 17
INPUT_NAME = "image"


def _require(module: str, extra: str = "train"):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"ONNX export needs {module}; pip install 'segrefine-edge[{extra}]'") from exc


def keras_to_onnx(model: keras.Model) -> Any:
    """The float ONNX graph of ``model`` (a ModelProto), through a SavedModel and tf2onnx."""
    tf = _require("tensorflow")
    tf2onnx = _require("tf2onnx")
    if len(model.inputs) != 1:
        raise ModelError("ONNX export takes segmenters (one image input); refiners stay TFLite for now")
    shape = [1, *(int(d) for d in model.inputs[0].shape[1:])]
    with tempfile.TemporaryDirectory(prefix="segrefine-onnx-") as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        loaded = tf.saved_model.load(saved)
        serve = tf.function(lambda image: loaded.serve([image]))
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)   # its per-node notes are not the user's
        proto, _ = tf2onnx.convert.from_function(
            serve, input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)], opset=OPSET)
    return proto


def with_contract(proto: Any, meta: dict[str, Any]) -> bytes:
    """The serialized model with ``meta`` as its contract (replacing one it carried)."""
    for index in reversed(range(len(proto.metadata_props))):
        if proto.metadata_props[index].key == CONTRACT_KEY:
            del proto.metadata_props[index]
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONTRACT_KEY, json.dumps(meta, indent=1)
    return proto.SerializeToString()


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader over the calibration images, one at a time."""

    def __init__(self, name: str, images: list[np.ndarray]) -> None:
        self.feeds = iter([{name: image[None].astype(np.float32)} for image in images])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def quantize_qdq(float_model: bytes, calibration: list[np.ndarray], out: Path, meta: dict[str, Any]) -> None:
    """Write ``out``: ``float_model`` with int8 Q/DQ nodes (symmetric, per-channel weights), calibrated
    on ``calibration`` (RGB float images at the input size), carrying ``meta`` as its contract."""
    onnx = _require("onnx")
    quantization = _require("onnxruntime.quantization", "onnx")
    with tempfile.TemporaryDirectory(prefix="segrefine-qdq-") as work:
        source, prepared, quantized = (Path(work) / name for name in ("float.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(float_model)
        # shape inference and graph folding first, as onnxruntime asks for static quantisation
        quantization.shape_inference.quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(
            str(prepared), str(quantized), _CalibrationReader(INPUT_NAME, calibration),
            quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
        proto = onnx.load(str(quantized))
    write_atomic(out, with_contract(proto, meta))


def zero_points(model: bytes) -> list[int]:
    """Every zero point of the model's QuantizeLinear/DequantizeLinear nodes (all 0 when symmetric)."""
    onnx = _require("onnx")
    numpy_helper = _require("onnx.numpy_helper")
    proto = onnx.load_from_string(model)
    initializers = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    values: list[int] = []
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            values.extend(int(v) for v in np.ravel(initializers[node.input[2]]))
    return values
