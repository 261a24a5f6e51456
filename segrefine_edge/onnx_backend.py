"""ONNX models behind the Backend interface: onnxruntime (CPU, or CUDA where installed) and TensorRT.

On a Jetson the LiteRT CPU path leaves the GPU idle; NVIDIA's own segmentation demos run through
TensorRT. `convert RUN --to onnx` / `--to onnx-int8` write the models these backends run; the
contract (labels, palette, input range) is the JSON `convert` stores in the model's metadata.
Neither runtime is a core dependency: each failure to find one is a one-line ModelError that
names the package.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.backend import TensorInfo, check_model_path
from segrefine_edge.contract import parse_metadata
from segrefine_edge.errors import DelegateError, ModelError

CONTRACT_KEY = "segrefine_edge.contract"
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def is_onnx_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError("ONNX models need onnxruntime; pip install 'segrefine-edge[onnx]'") from exc
    return onnxruntime


class OnnxBackend:
    """One onnxruntime session: the same set_input / invoke / output calls as the TFLite Backend."""

    def __init__(self, path: str | Path, delegate: str = "auto", threads: int = 2) -> None:
        ort = _import_onnxruntime()
        self.path, self.threads, self.runtime = Path(path), threads, "onnxruntime"
        check_model_path(self.path)
        providers = ["CPUExecutionProvider"]
        self.delegate = "cpu"
        if delegate == "gpu":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise DelegateError("onnxruntime here has no CUDA provider; pip install onnxruntime-gpu, or use "
                                    "--runtime tensorrt, or --delegate cpu")
            providers, self.delegate = ["CUDAExecutionProvider", "CPUExecutionProvider"], "gpu"
        elif delegate == "edgetpu":
            raise DelegateError("the EdgeTPU runs compiled .tflite models, not ONNX; use a _edgetpu.tflite model")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:   # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path.name} is not a model onnxruntime can load ({first[:160]})") from exc
        self.inputs = [self._tensor_info(i, t) for i, t in enumerate(self.session.get_inputs())]
        self.outputs = [self._tensor_info(i, t) for i, t in enumerate(self.session.get_outputs())]
        meta = self.embedded_metadata() or {}
        self.integer_model = str(meta.get("info", {}).get("target", "")).endswith("int8")
        self._feeds: dict[str, np.ndarray] = {}
        self._results: list[np.ndarray] = []

    def _tensor_info(self, index: int, arg: Any) -> TensorInfo:
        """onnxruntime's NodeArg as the TensorInfo the contract and the pipeline read (float, unquantised)."""
        return TensorInfo(index, arg.name, _static_shape(arg.shape, self.path),
                          np.dtype(_ORT_TYPES.get(arg.type, np.float32)), 0.0, 0)

    def embedded_metadata(self) -> dict[str, Any] | None:
        raw = self.session.get_modelmeta().custom_metadata_map.get(CONTRACT_KEY)
        return None if raw is None else parse_metadata(raw, self.path)

    def set_input(self, index: int, value: np.ndarray) -> None:
        self._feeds[self.inputs[index].name] = value

    def invoke(self) -> None:
        self._results = self.session.run(None, self._feeds)

    def output(self, index: int) -> np.ndarray:
        return self._results[index]

    def describe(self) -> str:
        return f"{self.runtime}/{self.delegate}/{self.threads} threads"


def _static_shape(shape: list, path: Path) -> tuple[int, ...]:
    """Shapes with a free batch dimension run at batch 1; any other free dimension is refused."""
    dims = [1 if i == 0 and not isinstance(d, int) else d for i, d in enumerate(shape)]
    if not all(isinstance(d, int) for d in dims):
        raise ModelError(f"{path.name} has dynamic dimensions {shape}; export it at a fixed input size (--input-size)")
    return tuple(dims)


def engine_cache_dir() -> Path:
    """Where TensorRT engines are kept: the service's CacheDirectory (systemd sets CACHE_DIRECTORY),
    else $XDG_CACHE_HOME or ~/.cache, under segrefine-edge/tensorrt."""
    base = os.environ.get("CACHE_DIRECTORY") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base.split(":")[0]) / "segrefine-edge" / "tensorrt"


def engine_cache_path(model: bytes, gpu_name: str, trt_version: str, cache_dir: Path | None = None) -> Path:
    """One engine per model, GPU and TensorRT version: an engine built for one of them is not
    valid on another (TensorRT refuses it, or runs tactics tuned for another chip)."""
    digest = hashlib.sha256(model).hexdigest()[:16]
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    return (cache_dir or engine_cache_dir()) / f"{digest}-{gpu}-trt{trt_version}.engine"


def open_onnx_backend(path: str | Path, runtime: str, delegate: str, threads: int):
    """The backend for an ONNX model: onnxruntime unless TensorRT is asked for."""
    if not is_onnx_path(path):
        raise ModelError(f"runtime '{runtime}' runs .onnx models and {Path(path).name} is not one; export one with "
                         "`segrefine-edge convert RUN --to onnx` (or onnx-int8), or use --runtime auto")
    if runtime == "tensorrt":
        from segrefine_edge.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, threads=threads)
    if runtime not in ("auto", "onnxruntime"):
        raise ModelError(f"runtime '{runtime}' runs .tflite models, not {Path(path).name}; use --runtime onnxruntime "
                         "or tensorrt for ONNX models")
    return OnnxBackend(path, delegate, threads)
