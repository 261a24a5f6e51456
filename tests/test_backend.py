"""Interpreter backends and delegates: choices, fallbacks and one-line errors."""

from __future__ import annotations

import pytest

from segrefine_edge.backend import Backend, cpu_twin, open_backend, resolve_runtime
from segrefine_edge.errors import DelegateError, ModelError


def test_prefers_litert():
    name, _, _ = resolve_runtime("auto")
    assert name == "litert"


def test_unknown_runtime_is_an_error():
    with pytest.raises(ModelError, match="unknown runtime"):
        resolve_runtime("onnx")


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        Backend(tmp_path / "nope.tflite")


def test_file_that_is_not_tflite(tmp_path):
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a TFLite model"):
        Backend(bogus)


def test_edgetpu_model_on_cpu_says_what_to_do(peers):
    with pytest.raises(ModelError, match="compiled for the EdgeTPU"):
        Backend(peers / "coral" / "deeplabv3_mnv2_pascal_quant_edgetpu.tflite", delegate="cpu")


def test_edgetpu_delegate_without_tpu_is_a_clear_error(peers):
    with pytest.raises(DelegateError, match=r"libedgetpu|EdgeTPU"):
        Backend(peers / "coral" / "deeplabv3_mnv2_pascal_quant_edgetpu.tflite", delegate="edgetpu")


def test_auto_falls_back_to_cpu_twin_and_says_so_once(peers, capsys):
    model = peers / "coral" / "deeplabv3_mnv2_pascal_quant_edgetpu.tflite"
    assert cpu_twin(model) == peers / "coral" / "deeplabv3_mnv2_pascal_quant.tflite"
    first = open_backend(model, delegate="auto")
    second = open_backend(model, delegate="auto")
    assert first.delegate == second.delegate == "cpu"
    assert first.path.name == "deeplabv3_mnv2_pascal_quant.tflite"
    assert capsys.readouterr().err.count("running deeplabv3_mnv2_pascal_quant.tflite on the CPU") == 1


def test_gpu_delegate_missing_is_a_clear_error(cityscapes_model):
    with pytest.raises(DelegateError, match="GPU delegate"):
        Backend(cityscapes_model, delegate="gpu")


def test_tensor_details(cityscapes_model):
    backend = Backend(cityscapes_model, threads=1)
    assert backend.inputs[0].shape == (1, 513, 513, 3)
    assert backend.inputs[0].quantized
    assert backend.outputs[0].dtype.name == "int64"
    assert backend.describe() == "litert/cpu/1 threads"
