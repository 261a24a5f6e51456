"""ONNX export for onnxruntime and TensorRT: float parity with Keras, symmetric int8 Q/DQ, the contract
in the model's metadata, and one-line errors where a runtime is missing or the model is the wrong kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.train

from segrefine_edge.cli import main  # noqa: E402
from segrefine_edge.conversion.onnx_export import zero_points  # noqa: E402
from segrefine_edge.onnx_backend import engine_cache_path  # noqa: E402
from segrefine_edge.segmenter import Segmenter  # noqa: E402

CLI = [sys.executable, "-m", "segrefine_edge"]


@pytest.fixture()
def street_frame(camvid: Path) -> np.ndarray:
    return cv2.imread(str(sorted((camvid / "val").iterdir())[0]), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def onnx_models(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny run exported as float ONNX, int8 Q/DQ ONNX and float32 TFLite, once for the module."""
    folder = tmp_path_factory.mktemp("onnx")
    models = {"onnx": folder / "tiny.onnx", "onnx-int8": folder / "tiny_int8.onnx",
              "float32": folder / "tiny_float32.tflite"}
    for target, out in list(models.items()):
        result = CliRunner().invoke(main, ["convert", str(tiny_run), "--to", target, "--out", str(out),
                                           "--val-count", "4", "--calib-count", "4", "--max-drop", "1"])
        assert result.exit_code == 0, result.output
        assert "validation on 4 images" in result.output
        models[f"{target}-output"] = result.output
    return models


def test_float_onnx_agrees_with_keras_and_tflite_and_carries_the_contract(onnx_models: dict, street_frame):
    assert "agreement 1.0000" in onnx_models["onnx-output"]
    onnx, tflite = Segmenter.open(onnx_models["onnx"]), Segmenter.open(onnx_models["float32"])
    assert onnx.backend.describe().startswith("onnxruntime/cpu")
    assert onnx.contract.labels == tflite.contract.labels and onnx.contract.input_hw == (64, 96)
    assert onnx.contract.palette == tflite.contract.palette and "metadata" in onnx.contract.source
    a, b = onnx.scores(street_frame).values, tflite.scores(street_frame).values
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_int8_onnx_has_symmetric_qdq_and_per_channel_weights(onnx_models: dict, street_frame):
    import onnx

    data = onnx_models["onnx-int8"].read_bytes()
    points = zero_points(data)
    assert points and set(points) == {0}                         # symmetric: what TensorRT accepts
    proto = onnx.load_from_string(data)
    kinds = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= kinds
    scales = {t.name: t for t in proto.graph.initializer}
    per_channel = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[1] in scales and len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1]
    assert per_channel                                            # weights carry one scale per output channel
    assert onnx_models["onnx-int8"].stat().st_size < 0.5 * onnx_models["onnx"].stat().st_size
    labels = Segmenter.open(onnx_models["onnx-int8"]).segment(street_frame)
    assert labels.shape == street_frame.shape[:2]


def test_stream_and_eval_run_an_onnx_model(onnx_models: dict, tmp_path: Path, street_frame):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), street_frame)
    result = subprocess.run([*CLI, "stream", str(frames), "-m", str(onnx_models["onnx"]), "--no-display",
                             "--masks", str(tmp_path / "masks")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "masks").iterdir())) == 3


@pytest.mark.parametrize(("model_key", "runtime", "expected"), [
    ("float32", "tensorrt", "runs .onnx models"),
    ("onnx", "litert", "runs .tflite models"),
    ("onnx", "tensorrt", "needs TensorRT's Python bindings"),
])
def test_a_runtime_for_the_wrong_kind_of_model_or_a_missing_one_is_one_line(onnx_models: dict, model_key: str,
                                                                             runtime: str, expected: str):
    if runtime == "tensorrt" and model_key == "onnx":
        try:
            import tensorrt  # noqa: F401
            pytest.skip("TensorRT is installed here; the missing-runtime message cannot show")
        except ImportError:
            pass
    result = subprocess.run([*CLI, "bench", str(onnx_models[model_key]), "--runtime", runtime, "--runs", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]


def test_a_damaged_onnx_file_is_one_line(tmp_path: Path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage" * 10)
    result = subprocess.run([*CLI, "bench", str(broken), "--runs", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a model onnxruntime can load" in result.stderr
    assert "Traceback" not in result.stderr


def test_engines_are_cached_per_model_gpu_and_tensorrt_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    base = engine_cache_path(b"model", "Orin (nvgpu)", "10.3.0", tmp_path)
    assert base.parent == tmp_path and base.name.endswith("-orin-nvgpu-trt10.3.0.engine")
    assert len({base, engine_cache_path(b"other", "Orin (nvgpu)", "10.3.0", tmp_path),
                engine_cache_path(b"model", "NVIDIA H200", "10.3.0", tmp_path),
                engine_cache_path(b"model", "Orin (nvgpu)", "10.7.0", tmp_path)}) == 4
    monkeypatch.setenv("CACHE_DIRECTORY", str(tmp_path / "service-cache"))     # systemd's CacheDirectory=
    assert engine_cache_path(b"model", "Orin", "10.3.0").is_relative_to(tmp_path / "service-cache")
    assert os.environ["CACHE_DIRECTORY"]
