"""TFLite interpreter backends and delegates.

Runtimes, in order of preference: ai_edge_litert (LiteRT, fast int8 kernels), tflite_runtime
(what Coral's libedgetpu stack is built against), tensorflow.lite (always there with the
`train` extra). Delegates: EdgeTPU through libedgetpu; GPU through LiteRT's own GPU accelerator
(litert_gpu) with LiteRT, or a GPU delegate library where one is installed for the other runtimes.
Every failure becomes a ModelError or DelegateError whose message names the cause and the fix.
"""

from __future__ import annotations

import importlib
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.errors import DelegateError, ModelError
from segrefine_edge.litert_gpu import CompiledGpuRunner, accelerator_installed
from segrefine_edge.native import library_present

RUNTIMES = ("litert", "tflite-runtime", "tensorflow")
ONNX_RUNTIMES = ("onnxruntime", "tensorrt")      # for .onnx models (onnx_backend.py)
DELEGATES = ("auto", "cpu", "gpu", "edgetpu")
_RUNTIME_MODULES = {
    "litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}
EDGETPU_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
GPU_LIBRARIES = ("libLiteRtGpuAccelerator.so", "libtensorflowlite_gpu_delegate.so")
EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"
TFLITE_IDENTIFIER = b"TFL3"


def _import_runtime(name: str):
    module = importlib.import_module(_RUNTIME_MODULES[name])
    return module.Interpreter, module.load_delegate


def resolve_runtime(name: str = "auto"):
    """Return (runtime name, Interpreter class, load_delegate) for ``name`` or the first installed."""
    candidates = RUNTIMES if name == "auto" else (name,)
    if name != "auto" and name not in RUNTIMES:
        raise ModelError(f"unknown runtime '{name}'; choose one of auto, {', '.join(RUNTIMES)}")
    for candidate in candidates:
        try:
            interpreter_cls, load_delegate = _import_runtime(candidate)
        except ImportError:
            continue
        return candidate, interpreter_cls, load_delegate
    if name == "auto":
        raise ModelError("no TFLite runtime is installed; pip install ai-edge-litert")
    package = {"litert": "ai-edge-litert", "tflite-runtime": "tflite-runtime", "tensorflow": "tensorflow"}[name]
    raise ModelError(f"runtime '{name}' is not installed; pip install {package} or use --runtime auto")


def is_edgetpu_model(data: bytes) -> bool:
    """True for models compiled by edgetpu_compiler: they hold the EdgeTPU custom op."""
    return EDGETPU_CUSTOM_OP in data


def check_model_path(path: Path) -> None:
    """A model path must name a file (any format): a folder or a missing file is one line."""
    if path.is_dir():
        raise ModelError(f"{path} is a folder, not a model; pass the model file inside it")
    if not path.is_file():
        raise ModelError(f"model {path} does not exist; check the path")


def read_model_bytes(path: str | Path) -> bytes:
    path = Path(path)
    check_model_path(path)
    data = path.read_bytes()
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{path} is not a TFLite model (no TFL3 identifier); pass a .tflite file")
    return data


def _load_edgetpu(load_delegate) -> Any:
    library = EDGETPU_LIBRARIES.get(platform.system(), "libedgetpu.so.1")
    if not library_present(library):
        raise DelegateError(f"EdgeTPU runtime {library} is not installed; install libedgetpu1-std from "
                            "Coral's apt repository (https://coral.ai/docs/accelerator/get-started/)")
    try:
        return load_delegate(library)
    except (ValueError, OSError, RuntimeError) as exc:
        raise DelegateError(f"no EdgeTPU device found ({library} loaded but could not open a TPU); "
                            "plug in the Coral device or use --delegate cpu with a non-_edgetpu model") from exc


def _load_gpu(load_delegate) -> Any:
    for library in GPU_LIBRARIES:
        if not library_present(library):
            continue
        try:
            return load_delegate(library)
        except (ValueError, OSError, RuntimeError) as exc:
            raise DelegateError(f"GPU delegate {library} failed to load ({str(exc).strip() or type(exc).__name__}); "
                                "use --delegate cpu") from exc
    raise DelegateError("no GPU delegate library is installed for this runtime "
                        f"({' / '.join(GPU_LIBRARIES)}); use --delegate cpu")


@dataclass
class TensorInfo:
    """What a tensor declares: shape, dtype and (scale, zero point) when quantised."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)


def _tensor_info(detail: dict) -> TensorInfo:
    scale, zero = detail.get("quantization", (0.0, 0))
    return TensorInfo(detail["index"], detail["name"], tuple(int(v) for v in detail["shape"]),
                      np.dtype(detail["dtype"]), float(scale), int(zero))


class Backend:
    """One loaded interpreter with its delegate: set inputs, invoke, read outputs.

    ``delegate='auto'`` uses the EdgeTPU for EdgeTPU-compiled models and the CPU otherwise,
    printing one line to stderr when it had to fall back.
    """

    def __init__(self, path: str | Path, runtime: str = "auto", delegate: str = "auto", threads: int = 2) -> None:
        if delegate not in DELEGATES:
            raise DelegateError(f"unknown delegate '{delegate}'; choose one of {', '.join(DELEGATES)}")
        data = read_model_bytes(path)
        self.path = Path(path)
        self.runtime, interpreter_cls, load_delegate = resolve_runtime(runtime)
        self.delegate = self._choose_delegate(delegate, is_edgetpu_model(data), load_delegate)
        delegates = [] if self.delegate_handle is None else [self.delegate_handle]
        compiled_gpu = self.delegate == "gpu" and self.delegate_handle is None
        try:
            self.interpreter = interpreter_cls(model_path=str(path), num_threads=threads,
                                               experimental_delegates=delegates)
            if not compiled_gpu:   # the compiled model holds the tensors instead
                self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise self._explain(exc, data) from exc
        self.threads = threads
        self.inputs = [_tensor_info(d) for d in self.interpreter.get_input_details()]
        self.outputs = [_tensor_info(d) for d in self.interpreter.get_output_details()]
        # Integer inside even when the I/O is float (int8 with a few float layers): not a GPU model.
        self.integer_model = any(d["dtype"] in (np.int8, np.uint8) for d in self.interpreter.get_tensor_details())
        self.gpu_runner = self._compile_for_gpu() if compiled_gpu else None

    def _compile_for_gpu(self) -> CompiledGpuRunner:
        runner = CompiledGpuRunner(self.path, [t.name for t in self.inputs], [t.name for t in self.outputs], self.threads)
        if not runner.fully_accelerated:
            warn_once(f"the GPU cannot run every op of {self.path.name}; LiteRT runs the rest on the CPU")
        return runner

    def _choose_delegate(self, requested: str, edgetpu_model: bool, load_delegate) -> str:
        self.delegate_handle = None
        if requested == "auto" and not edgetpu_model:
            return "cpu"
        if requested == "cpu":
            if edgetpu_model:
                raise ModelError(f"{self.path.name} is compiled for the EdgeTPU and cannot run on the CPU; "
                                 "use --delegate edgetpu with a Coral device, or the model without _edgetpu")
            return "cpu"
        if requested == "edgetpu" or (requested == "auto" and edgetpu_model):
            self.delegate_handle = _load_edgetpu(load_delegate)
            return "edgetpu"
        if requested == "gpu":
            if self.runtime != "litert" or not accelerator_installed():
                self.delegate_handle = _load_gpu(load_delegate)
            return "gpu"
        return "cpu"

    def _explain(self, exc: Exception, data: bytes) -> ModelError:
        text = str(exc)
        op = re.search(r"unresolved custom op: ([\w\-]+)", text) or re.search(r"Didn't find op for builtin opcode '(\w+)'", text)
        if op and is_edgetpu_model(data):
            return ModelError(f"{self.path.name} is compiled for the EdgeTPU; run it with --delegate edgetpu "
                              "on a Coral device, or use the model without _edgetpu")
        if op:
            fix = ("upgrade ai-edge-litert or try --runtime tensorflow" if self.runtime == "litert"
                   else "run it with LiteRT (pip install ai-edge-litert; --runtime litert)")
            return ModelError(f"{self.path.name} uses op {op.group(1)}, which runtime '{self.runtime}' lacks; {fix}")
        if "identifier" in text:
            return ModelError(f"{self.path.name} is not a valid TFLite model ({text.splitlines()[0]})")
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return ModelError(f"{self.path.name} could not be loaded by runtime '{self.runtime}': {first}")

    def embedded_metadata(self) -> dict[str, Any] | None:
        """The contract `convert` appended to the model (or its .json sidecar)."""
        from segrefine_edge.contract import read_embedded_metadata

        return read_embedded_metadata(self.path)

    def set_input(self, index: int, value: np.ndarray) -> None:
        if self.gpu_runner is not None:
            self.gpu_runner.set_input(index, value)
        else:
            self.interpreter.set_tensor(self.inputs[index].index, value)

    def invoke(self) -> None:
        (self.gpu_runner or self.interpreter).invoke()

    def output(self, index: int) -> np.ndarray:
        if self.gpu_runner is not None:
            return self.gpu_runner.output(index)
        return self.interpreter.get_tensor(self.outputs[index].index)

    def describe(self) -> str:
        return f"{self.runtime}/{self.delegate}/{self.threads} threads"


_NOTICES_GIVEN: set[str] = set()


def warn_once(message: str) -> None:
    """Print a one-line notice to stderr the first time it is given (e.g. a delegate fallback)."""
    if message not in _NOTICES_GIVEN:
        _NOTICES_GIVEN.add(message)
        print(f"note: {message}", file=sys.stderr)


CPU_TWIN_SUFFIXES = ("", "_int8", "_edgetpu-ready")


def cpu_twin(path: Path) -> Path | None:
    """The CPU model beside ``X_edgetpu.tflite``, if present: ``X.tflite`` (Coral's naming),
    else ``X_int8.tflite`` or ``X_edgetpu-ready.tflite`` (what ``convert`` writes)."""
    if not path.stem.endswith("_edgetpu"):
        return None
    base = path.stem[: -len("_edgetpu")]
    for suffix in CPU_TWIN_SUFFIXES:
        twin = path.with_name(base + suffix + path.suffix)
        if twin.is_file():
            return twin
    return None


def open_backend(path: str | Path, runtime: str = "auto", delegate: str = "auto", threads: int = 2):
    """Open a model; with ``delegate='auto'``, fall back to the CPU (saying so once) where that is possible.

    An EdgeTPU-compiled model without a TPU falls back to its CPU twin; a float model tries the
    GPU first and runs on the CPU when there is none; int8 models take the GPU only when asked.
    ONNX models go to onnxruntime, or to TensorRT with ``runtime='tensorrt'``.
    """
    from segrefine_edge.onnx_backend import is_onnx_path, open_onnx_backend

    path = Path(path)
    if is_onnx_path(path) or runtime in ONNX_RUNTIMES:
        return open_onnx_backend(path, runtime, delegate, threads)
    if delegate != "auto":
        return Backend(path, runtime, delegate, threads)
    try:
        backend = Backend(path, runtime, "auto", threads)
    except DelegateError as exc:
        twin = cpu_twin(path)
        if twin is None:
            raise
        warn_once(f"{exc.args[0].split(';')[0]}; running {twin.name} on the CPU instead")
        return Backend(twin, runtime, "cpu", threads)
    if backend.delegate == "cpu" and not backend.integer_model:
        try:
            return Backend(path, runtime, "gpu", threads)
        except (DelegateError, ModelError) as exc:
            warn_once(f"{exc.args[0].split('; ')[0]}; running this float model on the CPU")
    return backend
