"""Interpreter backends and delegates: choices, fallbacks and one-line errors."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from segrefine_edge import litert_gpu
from segrefine_edge.backend import Backend, cpu_twin, open_backend, resolve_runtime
from segrefine_edge.bench import random_inputs
from segrefine_edge.errors import DelegateError, ModelError
from segrefine_edge.litert_gpu import CompiledGpuRunner
from segrefine_edge.models import default_model_path, default_refiner_path
from segrefine_edge.pipeline import Pipeline
from segrefine_edge.refiner import open_refiner
from segrefine_edge.segmenter import Segmenter

# LiteRT's own features (its GPU accelerator, its compiled-model API, MediaPipe's custom ops): CI's
# second environment runs the rest of these tests through tflite-runtime alone
needs_litert = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                  reason="LiteRT-only behaviour; this environment runs tflite-runtime")

TEMPORAL_REFINER = default_refiner_path()   # three inputs of different shapes


def test_prefers_litert():
    """LiteRT where it is installed; CI's second environment has only tflite-runtime (Coral's
    stack) and says so in SEGREFINE_EDGE_EXPECT_RUNTIME, so its tests run through that runtime."""
    name, _, _ = resolve_runtime("auto")
    assert name == os.environ.get("SEGREFINE_EDGE_EXPECT_RUNTIME", "litert")


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


def test_cpu_twin_finds_what_convert_writes_beside_a_compiled_model(tmp_path):
    compiled = tmp_path / "street_edgetpu.tflite"
    assert cpu_twin(compiled) is None
    for name in ("street_edgetpu-ready.tflite", "street_int8.tflite", "street.tflite"):
        (tmp_path / name).write_bytes(b"x")
        assert cpu_twin(compiled) == tmp_path / name     # the later, the more preferred
    assert cpu_twin(tmp_path / "street_int8.tflite") is None


def test_every_file_an_error_message_points_to_exists():
    """A message that sends the user to a file in this repository must not send them nowhere."""
    import re

    root = Path(__file__).resolve().parent.parent
    for source in (root / "segrefine_edge").rglob("*.py"):
        for target in re.findall(r"\b((?:deploy|docs)/[\w./-]+\.(?:md|sh|rules|service))", source.read_text()):
            assert (root / target).is_file(), f"{source.name} points to {target}, which does not exist"


def test_auto_falls_back_to_cpu_twin_and_says_so_once(peers, capsys):
    model = peers / "coral" / "deeplabv3_mnv2_pascal_quant_edgetpu.tflite"
    assert cpu_twin(model) == peers / "coral" / "deeplabv3_mnv2_pascal_quant.tflite"
    first = open_backend(model, delegate="auto")
    second = open_backend(model, delegate="auto")
    assert first.delegate == second.delegate == "cpu"
    assert first.path.name == "deeplabv3_mnv2_pascal_quant.tflite"
    assert capsys.readouterr().err.count("running deeplabv3_mnv2_pascal_quant.tflite on the CPU") == 1


def _run(backend_or_runner, inputs: list[np.ndarray], outputs: int) -> list[np.ndarray]:
    for index, value in enumerate(inputs):
        backend_or_runner.set_input(index, value)
    backend_or_runner.invoke()
    return [backend_or_runner.output(index).copy() for index in range(outputs)]


@needs_litert
def test_compiled_model_runner_feeds_each_input_to_the_tensor_the_interpreter_names():
    # On the CPU the compiled model must give exactly the Interpreter's output, so only the
    # accelerator differs when it runs on a GPU.
    backend = Backend(TEMPORAL_REFINER, delegate="cpu")
    runner = CompiledGpuRunner(backend.path, [t.name for t in backend.inputs], [t.name for t in backend.outputs],
                               threads=2, gpu=False)
    inputs = random_inputs(backend.inputs, np.random.default_rng(0))
    expected = _run(backend, inputs, len(backend.outputs))
    got = _run(runner, inputs, len(backend.outputs))
    assert [g.shape for g in got] == [t.shape for t in backend.outputs]
    assert all(np.array_equal(g, e) for g, e in zip(got, expected, strict=True))
    assert not np.array_equal(_run(runner, random_inputs(backend.inputs, np.random.default_rng(1)), 1)[0], got[0])


@needs_litert
def test_tensor_details(cityscapes_model):
    backend = Backend(cityscapes_model, threads=1)
    assert backend.inputs[0].shape == (1, 513, 513, 3)
    assert backend.inputs[0].quantized
    assert backend.outputs[0].dtype.name == "int64"
    assert backend.describe() == "litert/cpu/1 threads"


@needs_litert
def test_gpu_without_vulkan_is_a_clear_error(cityscapes_model, monkeypatch):
    monkeypatch.setattr(litert_gpu, "library_present", lambda name: False)
    with pytest.raises(DelegateError, match=r"needs Vulkan and libvulkan.so.1 is not installed; install libvulkan1"):
        Backend(cityscapes_model, delegate="gpu")


@needs_litert
def test_compiled_model_that_the_buffers_cannot_carry_is_a_clear_error(cityscapes_model):
    # The Coral model ends in ArgMax: an int64 output, which LiteRT's tensor buffers do not support.
    backend = Backend(cityscapes_model, delegate="cpu")
    with pytest.raises(DelegateError, match=r"cannot carry this model's types \(Unsupported dtype: int64\); use --delegate cpu"):
        CompiledGpuRunner(backend.path, [t.name for t in backend.inputs], [t.name for t in backend.outputs],
                          threads=1, gpu=False)


def test_an_op_the_runtime_lacks_is_named_with_the_runtime_that_has_it(peers):
    """MediaPipe's selfie model needs a custom op only LiteRT carries: tflite-runtime names it."""
    runtime, _, _ = resolve_runtime("auto")
    if runtime == "litert":
        pytest.skip("LiteRT runs this model; the message shows with tflite-runtime or tensorflow.lite")
    with pytest.raises(ModelError, match=f"uses op Convolution2DTransposeBias, which runtime '{runtime}' lacks; "
                                         "run it with LiteRT"):
        Backend(peers / "mediapipe" / "selfie_segmentation.tflite")


def test_gpu_failure_is_explained_from_the_accelerators_log():
    log = ("INFO: [delegate_webgpu.cc:342] Create WebGPU environment\n"
           "ERROR: [delegate_webgpu.cc:359] Failed to initialize WebGPU environment: INTERNAL: No adapters found\n")
    assert "no GPU adapter was found" in litert_gpu._failure_reason(log, RuntimeError("ERROR: [compiled_model.cc:1036]"))
    other = "ERROR: [./litert/cc/litert_compiled_model.h:1961]\nERROR: [gl_delegate.cc:7] op CUSTOM is not supported\n"
    assert litert_gpu._failure_reason(other, RuntimeError("x")) == "ERROR: [gl_delegate.cc:7] op CUSTOM is not supported"


@needs_litert
@pytest.mark.parametrize("refined", [False, True], ids=["segmenter", "segmenter+temporal-refiner"])
def test_gpu_gives_the_cpus_answer_where_a_gpu_exists(camvid, refined):
    """Runs only where LiteRT finds a GPU (skipped elsewhere, where the tests above cover the errors).

    Real frames through the whole pipeline: on random pixels the logits are too close for float16
    (a GPU's) and int8 arithmetic to pick the same class everywhere, and nobody runs those."""
    frames = [cv2.imread(str(path)) for path in sorted((camvid / "val").iterdir())[:3]]
    labels = {}
    for delegate in ("cpu", "gpu"):
        try:
            segmenter = Segmenter.open(default_model_path(), delegate=delegate)
            refiner = open_refiner(str(TEMPORAL_REFINER), delegate=delegate) if refined else None
        except DelegateError as exc:
            if "needs Vulkan" not in str(exc) and "no GPU adapter" not in str(exc):
                raise   # a GPU is there and failed this model: that is a failure, not a skip
            pytest.skip(f"no GPU here: {exc}")
        pipeline = Pipeline.from_parts(segmenter, refiner)
        labels[delegate] = np.stack([pipeline.segment(frame).labels for frame in frames])
    assert segmenter.backend.gpu_runner is not None and segmenter.backend.describe().startswith("litert/gpu")
    agreement = np.mean(labels["gpu"] == labels["cpu"])
    assert agreement > 0.98, f"GPU and CPU agree on {agreement:.1%} of pixels"
