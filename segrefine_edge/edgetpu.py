"""Will the EdgeTPU map this model? A check that needs no compiler and no TPU.

edgetpu_compiler maps ops from the start of the graph up to the first op it cannot run;
that op and everything after it run on the CPU. This module applies Coral's published
table of supported operations and their limits to each op of a ``.tflite`` and reports
what would not be mapped, and where the graph would fall back.
Limits that need op options (conv dilation in x vs y, fused activations of pools) are not
read, so a clean report is necessary, not sufficient: edgetpu_compiler has the last word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.backend import read_model_bytes, resolve_runtime
from segrefine_edge.errors import ModelError

# Coral, "TensorFlow models on the Edge TPU", supported operations (TFLite op names).
SUPPORTED_OPS = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
    "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM",
    "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH",
    "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE",
    "TRANSPOSE_CONV", "HARD_SWISH",
}
# Ops whose integer operands are allowed to be int32 (biases, axes, shapes, sizes).
_INT32_OPERANDS_OK = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "MEAN", "SUM",
                      "REDUCE_MAX", "REDUCE_MIN", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "PAD",
                      "SLICE", "STRIDED_SLICE", "EXPAND_DIMS", "SPLIT", "TRANSPOSE", "SQUEEZE"}
_EIGHT_BIT = (np.uint8, np.int8)
COMPILED_OP = "edgetpu-custom-op"
# Bilinear resizes the compiler may leave on the CPU "to avoid loss in precision" (Coral's
# compiled pascal model keeps its 1x1 -> 33x33 image-pooling resize on the CPU).
_RISKY_RESIZE_FACTOR = 8


@dataclass
class OpFinding:
    index: int
    op: str
    reasons: list[str]


@dataclass
class EdgeTpuReport:
    path: Path
    ops: list[str]
    findings: list[OpFinding] = field(default_factory=list)
    warnings: list[OpFinding] = field(default_factory=list)

    @property
    def first_unmapped(self) -> OpFinding | None:
        return self.findings[0] if self.findings else None

    @property
    def mapped(self) -> int:
        """Ops before the first unmapped one: what the compiler would put on the TPU."""
        return self.first_unmapped.index if self.findings else len(self.ops)

    @property
    def compiled(self) -> bool:
        return COMPILED_OP in self.ops

    def format(self) -> str:
        if self.compiled:
            cpu = [op for op in self.ops if op != COMPILED_OP]
            return (f"{self.path.name} is already compiled for the EdgeTPU: {len(cpu)} op(s) left on the CPU"
                    + (f" ({', '.join(cpu)})" if cpu else ""))
        lines = [f"{self.path.name}: {len(self.ops)} ops; {self.mapped} would run on the EdgeTPU"]
        for warning in self.warnings:
            lines.append(f"  warning: op {warning.index} {warning.op}: {'; '.join(warning.reasons)}")
        if not self.findings:
            lines.append("every op is on Coral's supported list with 8-bit static tensors "
                         "(edgetpu_compiler has the last word)")
            return "\n".join(lines)
        first = self.findings[0]
        lines.append(f"falls back to the CPU from op {first.index} ({first.op}): "
                     f"{len(self.ops) - first.index} op(s) would run on the CPU")
        for finding in self.findings:
            lines.append(f"  op {finding.index:>4} {finding.op:<24} {'; '.join(finding.reasons)}")
        return "\n".join(lines)


def _shape_reasons(tensor: dict) -> list[str]:
    """Activations only: weights are 4-D by nature and are not subject to these limits."""
    reasons = []
    signature = [int(d) for d in tensor.get("shape_signature", tensor["shape"])]
    if any(d < 0 for d in signature):
        reasons.append(f"dynamic shape {signature} (the EdgeTPU needs static shapes)")
    if sum(1 for d in tensor["shape"] if d > 1) > 3:
        reasons.append(f"tensor {[int(d) for d in tensor['shape']]} has more than 3 dimensions above 1")
    return reasons


def _dtype_reasons(op: str, tensor: dict, is_output: bool) -> list[str]:
    dtype = tensor["dtype"]
    if dtype in _EIGHT_BIT:
        scales = tensor.get("quantization_parameters", {}).get("scales", ())
        quantized = tensor["quantization"][0] or len(scales)           # per-channel weights: scales only
        return [] if quantized else [f"{np.dtype(dtype).name} tensor without quantisation"]
    if dtype == np.int32 and op in _INT32_OPERANDS_OK and not is_output:
        return []
    return [f"{np.dtype(dtype).name} tensor '{tensor['name']}' (the EdgeTPU runs 8-bit quantised tensors only)"]


def _mean_reasons(op: dict, tensors: dict[int, dict], interpreter) -> list[str]:
    """MEAN: no reduction over the batch; a reduction over channels needs a multiple of 4."""
    if len(op["inputs"]) < 2:
        return []
    try:
        axes = np.atleast_1d(interpreter.get_tensor(int(op["inputs"][1]))).tolist()
    except (ValueError, RuntimeError):
        return []
    rank = len(tensors[int(op["inputs"][0])]["shape"])
    axes = [a % rank for a in axes]
    reasons = []
    if 0 in axes:
        reasons.append("reduces over the batch dimension")
    if rank - 1 in axes and tensors[int(op["inputs"][0])]["shape"][-1] % 4:
        reasons.append("reduces over channels that are not a multiple of 4")
    return reasons


def _resize_factor(op: dict, tensors: dict[int, dict]) -> int:
    source = tensors[int(op["inputs"][0])]["shape"]
    target = tensors[int(op["outputs"][0])]["shape"]
    return int(max(target[1] / max(source[1], 1), target[2] / max(source[2], 1)))


def ops_details(interpreter: Any) -> list[dict]:
    """Every op of an interpreter's graph (op_name, index, inputs, outputs).

    LiteRT and tflite-runtime expose these only through the private ``_get_ops_details``; this
    is the one place that calls it, so an upgrade that removes it fails here, in one line.
    """
    details = getattr(interpreter, "_get_ops_details", None)
    if details is None:
        raise ModelError(f"{type(interpreter).__module__} has no Interpreter._get_ops_details, which the EdgeTPU "
                         "check reads the graph with; pin ai-edge-litert to a version that has it")
    return list(details())


def check_edgetpu(path: str | Path, runtime: str = "auto") -> EdgeTpuReport:
    """Check every op of ``path`` against the EdgeTPU's supported operations and limits."""
    path = Path(path)
    data = read_model_bytes(path)
    _, interpreter_cls, _ = resolve_runtime(runtime)
    kwargs = {}
    try:
        from ai_edge_litert.interpreter import OpResolverType

        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    except ImportError:
        pass
    try:
        interpreter = interpreter_cls(model_content=data, **kwargs)   # not allocated: custom ops may be absent
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{path.name} cannot be read to check it ({str(exc).splitlines()[0]})") from exc
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = ops_details(interpreter)
    activations = {int(i) for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}
    report = EdgeTpuReport(path, [])
    for op in ops:
        name = op["op_name"]
        report.ops.append(name)
        reasons = [] if name in SUPPORTED_OPS else [f"{name} is not on the EdgeTPU's supported list"]
        for position, index in enumerate(list(op["inputs"]) + list(op["outputs"])):
            if index < 0 or index not in tensors:
                continue
            tensor = tensors[int(index)]
            reasons += _dtype_reasons(name, tensor, position >= len(op["inputs"]))
            if int(index) in activations:
                reasons += _shape_reasons(tensor)
        if name == "MEAN":
            reasons += _mean_reasons(op, tensors, interpreter)
        if name == "RESIZE_BILINEAR" and not reasons:
            factor = _resize_factor(op, tensors)
            if factor >= _RISKY_RESIZE_FACTOR:
                report.warnings.append(OpFinding(op["index"], name, [
                    f"upsamples x{factor}: edgetpu_compiler may keep it on the CPU for precision; "
                    "a nearest-neighbour resize or a smaller factor maps reliably"]))
        if reasons:
            report.findings.append(OpFinding(op["index"], name, sorted(set(reasons), key=reasons.index)))
    return report
