"""LiteRT's GPU accelerator, reached through its CompiledModel API.

The ai-edge-litert wheel no longer ships a GPU delegate library for the Interpreter's
load_delegate: its GPU path is an accelerator (ML Drift over WebGPU, which Dawn runs on Vulkan,
Metal or Direct3D 12) that only CompiledModel uses. This module runs a model that way behind the
same set_input / invoke / output calls as the Interpreter, so every command gets ``--delegate gpu``.
The accelerator logs dozens of lines from native code; they are captured while the model is
compiled and warmed up, and read only to explain a failure in one line.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.errors import DelegateError
from segrefine_edge.native import library_present, native_output_to

WEBGPU_ACCELERATOR = "libLiteRtWebGpuAccelerator.so"
VULKAN_LIBRARY = "libvulkan.so.1"
# What the accelerator's log says when it fails, and the one line that explains each.
_FAILURE_REASONS = (
    ("Couldn't load Vulkan", f"Vulkan ({VULKAN_LIBRARY}) could not be loaded"),
    ("No adapters found", "no GPU adapter was found (no GPU, or its Vulkan driver is not installed)"),
)


def accelerator_installed() -> bool:
    """Whether the installed ai-edge-litert has CompiledModel and its GPU accelerator beside it."""
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is None or spec.origin is None:
        return False
    package = Path(spec.origin).parent
    return (package / "compiled_model.py").is_file() and (package / WEBGPU_ACCELERATOR).is_file()


def _failure_reason(log: str, exc: Exception) -> str:
    for marker, reason in _FAILURE_REASONS:
        if marker in log:
            return reason
    if isinstance(exc, ValueError):   # raised in Python by the tensor buffers, not logged
        return f"its tensor buffers cannot carry this model's types ({exc})"
    errors = [line.strip() for line in log.splitlines() if line.startswith("ERROR") and "litert_compiled_model.h" not in line]
    return errors[-1] if errors else (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class CompiledGpuRunner:
    """One model compiled for LiteRT's GPU accelerator, with the CPU taking the ops it cannot run.

    ``input_names`` and ``output_names`` are the tensor names of the Interpreter's details, in
    their order, so that index ``i`` here is the same tensor as ``Backend.inputs[i]``. ``gpu=False``
    runs the same plumbing on the CPU alone, which is how machines without a GPU test it.
    """

    def __init__(self, path: Path, input_names: Sequence[str], output_names: Sequence[str], threads: int,
                 gpu: bool = True) -> None:
        if gpu and platform.system() == "Linux" and not library_present(VULKAN_LIBRARY):
            raise DelegateError(f"LiteRT's GPU accelerator needs Vulkan and {VULKAN_LIBRARY} is not installed; "
                                "install libvulkan1 and the GPU's driver, or use --delegate cpu")
        from ai_edge_litert.compiled_model import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        wanted = (HardwareAccelerator.GPU | HardwareAccelerator.CPU) if gpu else HardwareAccelerator.CPU
        options = Options(hardware_accelerators=wanted, cpu_options=CpuOptions(num_threads=threads))
        failure = None
        with tempfile.TemporaryFile() as log, native_output_to(log):
            try:
                self._compile(path, options, input_names, output_names)
            except (RuntimeError, ValueError) as exc:
                log.seek(0)
                failure = _failure_reason(log.read().decode(errors="replace"), exc)
            # Leaving the except clause frees the failed environment here, where its log is captured.
        if failure is not None:
            raise DelegateError(f"LiteRT's GPU accelerator could not run {path.name}: {failure}; use --delegate cpu")

    def _compile(self, path: Path, options: Any, input_names: Sequence[str], output_names: Sequence[str]) -> None:
        from ai_edge_litert.compiled_model import CompiledModel

        self.model = CompiledModel.from_file(str(path), environment=_shared_environment(), options=options)
        signature = next(iter(self.model.get_signature_list()))
        self._input_buffers = self.model.create_input_buffers(0)
        self._output_buffers = self.model.create_output_buffers(0)
        self.inputs = _in_order(self._input_buffers, self.model.get_input_tensor_details(signature), input_names)
        self.outputs = _in_order(self._output_buffers, self.model.get_output_tensor_details(signature), output_names)
        self.fully_accelerated = bool(self.model.is_fully_accelerated())
        # The first run builds the GPU's programs: do it here, logs captured, not on frame one. It also
        # meets any tensor type the buffers cannot carry (a ValueError, e.g. an ArgMax's int64 output).
        for index, tensor in enumerate(self.inputs):
            self.set_input(index, np.zeros(tensor.shape, tensor.dtype))
        self.invoke()
        for index in range(len(self.outputs)):
            self.output(index)

    def set_input(self, index: int, value: np.ndarray) -> None:
        self.inputs[index].buffer.write(np.ascontiguousarray(value))

    def invoke(self) -> None:
        self.model.run_by_index(0, self._input_buffers, self._output_buffers)

    def output(self, index: int) -> np.ndarray:
        tensor = self.outputs[index]
        return tensor.buffer.read(tensor.size, tensor.dtype).reshape(tensor.shape)


def environment_created() -> bool:
    """Whether this process created LiteRT's GPU environment (which logs again at exit)."""
    return _shared_environment.cache_info().currsize > 0


@functools.cache
def _shared_environment() -> Any:
    """One LiteRT environment (and GPU device) for every model of the process: the segmenter and
    the refiner share it, and its start-up log is written once, inside a capture."""
    import ai_edge_litert
    from ai_edge_litert.compiled_model import Environment, EnvironmentOptions

    return Environment.create(options=EnvironmentOptions(runtime_path=str(Path(ai_edge_litert.__file__).parent)))


@dataclass(frozen=True)
class _BufferedTensor:
    """A signature tensor's buffer with what reading it needs, worked out once rather than per frame."""

    buffer: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    size: int


def _in_order(buffers: list, details: dict[str, dict], names: Sequence[str]) -> list[_BufferedTensor]:
    """Pair each signature buffer with its tensor's shape and type, ordered like the Interpreter's ``names``."""
    by_name = {}
    for buffer, detail in zip(buffers, details.values(), strict=True):
        shape = tuple(int(v) for v in detail["shape"])
        by_name[detail["name"]] = _BufferedTensor(buffer, shape, np.dtype(detail["dtype"]), math.prod(shape))
    return [by_name[name] for name in names]

