"""TensorRT behind the Backend interface, for Jetson boards (and any CUDA GPU with the tensorrt wheels).

The engine is built on the device from the ONNX model `convert --to onnx-int8` (or `onnx`) wrote,
with the TensorRT Python bindings JetPack ships, and cached per model, GPU and TensorRT version
(`onnx_backend.engine_cache_path`): the first start takes minutes on a Jetson, later ones load the
engine in a second. Device memory goes through cuda-python's runtime bindings (`cuda-python`),
the way NVIDIA's own TensorRT samples move it. The int8 model carries explicit symmetric Q/DQ
nodes, so the builder needs no calibrator (TensorRT 10 deprecated implicit calibration).

Never run here: the build machines have no GPU. What runs without one (the cache key, the
one-line errors when TensorRT or cuda-python is missing) is tested; see deploy/jetson/README.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.backend import TensorInfo, check_model_path
from segrefine_edge.errors import DelegateError, ModelError
from segrefine_edge.onnx_backend import engine_cache_path

log = logging.getLogger(__name__)


def _import_tensorrt() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise DelegateError("--runtime tensorrt needs TensorRT's Python bindings: on a Jetson they come with "
                            "JetPack (python3-libnvinfer); elsewhere pip install tensorrt; or use --runtime "
                            "onnxruntime") from exc
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise DelegateError("--runtime tensorrt needs cuda-python for device memory; pip install "
                                "cuda-python (the version of the CUDA that JetPack installed)") from exc
    return trt, cudart


def _check(result: tuple) -> Any:
    """cuda-python returns (error, value...): raise on an error, return the value."""
    error, *values = result
    if int(error) != 0:
        raise DelegateError(f"CUDA call failed ({error}); check that the GPU is visible (nvidia-smi, or tegrastats "
                            "on a Jetson) and that this user is in the video group")
    return values[0] if len(values) == 1 else tuple(values)


def _build_engine(trt, model: bytes, path: Path) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)          # explicit batch: the only kind TensorRT 10 builds
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {path.name} ({errors[:200]}); export it again with "
                         "`segrefine-edge convert RUN --to onnx-int8`")
    config = builder.create_builder_config()
    if getattr(builder, "platform_has_fast_fp16", True):     # deprecated in TensorRT 10, always true on Tegra
        config.set_flag(trt.BuilderFlag.FP16)      # layers between Q/DQ pairs that stay float run in fp16
    config.set_flag(trt.BuilderFlag.INT8)          # honours the model's explicit Q/DQ scales
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine for {path.name}; its log above says why")
    return bytes(serialized)


class TensorRTBackend:
    """A TensorRT engine with one input and its outputs in device memory; host copies per frame."""

    def __init__(self, path: str | Path, threads: int = 2, cache_dir: Path | None = None) -> None:
        from segrefine_edge.onnx_backend import OnnxBackend

        trt, self._cudart = _import_tensorrt()
        self.path, self.threads, self.runtime, self.delegate = Path(path), threads, "tensorrt", "gpu"
        check_model_path(self.path)
        model = self.path.read_bytes()
        props = _check(self._cudart.cudaGetDeviceProperties(0))
        gpu_name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        cache = engine_cache_path(model, gpu_name, trt.__version__, cache_dir)
        if cache.is_file():
            engine_bytes = cache.read_bytes()
        else:
            log.warning("building a TensorRT engine for %s on %s (minutes on a Jetson; cached in %s)",
                        self.path.name, gpu_name, cache)
            engine_bytes = _build_engine(trt, model, self.path)
            cache.parent.mkdir(parents=True, exist_ok=True)
            from segrefine_edge.atomic import write_atomic

            write_atomic(cache, engine_bytes)
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise ModelError(f"the cached TensorRT engine {cache} does not load; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = _check(self._cudart.cudaStreamCreate())
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        for name in names:
            shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
            self._host[name] = np.empty(shape, trt.nptype(self.engine.get_tensor_dtype(name)))
            self._device[name] = int(_check(self._cudart.cudaMalloc(self._host[name].nbytes)))
            self.context.set_tensor_address(name, self._device[name])
        self.inputs = [TensorInfo(i, n, self._host[n].shape, self._host[n].dtype, 0.0, 0)
                       for i, n in enumerate(n for n in names if is_input[n])]
        self.outputs = [TensorInfo(i, n, self._host[n].shape, self._host[n].dtype, 0.0, 0)
                        for i, n in enumerate(n for n in names if not is_input[n])]
        # the contract is the ONNX model's own metadata: read it with onnxruntime where present
        try:
            self._metadata = OnnxBackend(self.path, "cpu", 1).embedded_metadata()
        except ModelError:
            self._metadata = None
        self.integer_model = True

    def embedded_metadata(self) -> dict[str, Any] | None:
        return self._metadata

    def set_input(self, index: int, value: np.ndarray) -> None:
        name = self.inputs[index].name
        self._host[name][...] = value
        self._copy(self._device[name], self._host[name], "cudaMemcpyHostToDevice")

    def invoke(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise DelegateError(f"TensorRT failed to run {self.path.name}; delete its cached engine and retry")
        for info in self.outputs:
            self._copy(self._host[info.name], self._device[info.name], "cudaMemcpyDeviceToHost")
        _check(self._cudart.cudaStreamSynchronize(self.stream))

    def _copy(self, target, source, kind: str) -> None:
        host = target if isinstance(target, np.ndarray) else source
        dst = target.ctypes.data if isinstance(target, np.ndarray) else target
        src = source.ctypes.data if isinstance(source, np.ndarray) else source
        _check(self._cudart.cudaMemcpyAsync(dst, src, host.nbytes, getattr(self._cudart.cudaMemcpyKind, kind),
                                            self.stream))

    def output(self, index: int) -> np.ndarray:
        return self._host[self.outputs[index].name]

    def describe(self) -> str:
        return f"tensorrt/gpu ({self.engine.num_layers} layers)"

    def __del__(self) -> None:
        for pointer in getattr(self, "_device", {}).values():
            self._cudart.cudaFree(pointer)
