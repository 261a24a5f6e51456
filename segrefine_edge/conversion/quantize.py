"""Keras model -> TFLite bytes for one target.

- float32: reference, any delegate;
- float16: weights in half precision, for GPU delegates (they compute in fp16 anyway);
- dynamic: int8 weights, float activations (no calibration; CPU only);
- int8: full-integer post-training quantisation, per-channel weights, activations calibrated
  on real images; uint8 input (raw pixels: the model normalises inside) and int8 output;
- edgetpu: int8 with uint8 input and output and static shapes, what edgetpu_compiler takes.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from segrefine_edge.conversion import TARGETS
from segrefine_edge.datasets import IMAGE_SUFFIXES, find_pairs
from segrefine_edge.errors import DatasetError, ModelError, SegrefineError
from segrefine_edge.preprocess import resize_image
from segrefine_edge.training.refiner_data import TRAIN_IMAGES, probabilities_at

_DEBUG_SAMPLES = 24  # images used to rank layers by quantisation error


def calibration_images(root: str | Path, split: str, count: int, input_hw: tuple[int, int],
                       seed: int = 0) -> list[np.ndarray]:
    """``count`` RGB float32 images at ``input_hw`` from a dataset split, or from a plain
    folder of images; drawn at random (seeded) so calibration sees the whole split."""
    root = Path(root)
    try:
        files = [pair.image for pair in find_pairs(root, split)]
    except DatasetError:
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise DatasetError(f"no calibration images in {root}: give --calib-data a dataset root or a folder of images")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), size=min(count, len(files)), replace=False)
    images = []
    for index in sorted(chosen):
        bgr = cv2.imread(str(files[index]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"calibration image {files[index]} cannot be read")
        rgb = cv2.cvtColor(resize_image(bgr, input_hw), cv2.COLOR_BGR2RGB)
        images.append(rgb.astype(np.float32))
    return images


def refiner_calibration(root: str | Path, split: str, logits_cache: Path | None, count: int,
                        input_hw: tuple[int, int], temporal: bool = False, seed: int = 0) -> list[list[np.ndarray]]:
    """(image, segmenter logits[, previous probabilities]) for a refiner, from the logits
    cached at training (at the logits input's size), drawn from the images the run lists beside
    that cache (a run from before the list: ``root``'s ``split``); a temporal refiner's previous
    mask is calibrated with the logits' softmax, which spans the same 0-1 range its own output will."""
    if logits_cache is None or not logits_cache.is_file():
        raise DatasetError("the refiner's training inputs (inputs/train.npy in its run folder) are gone; "
                           "re-run `train refiner` or keep its run folder whole")
    logits = np.load(logits_cache, mmap_mode="r")
    listed = logits_cache.with_name(TRAIN_IMAGES)
    if listed.is_file():            # the images the run trained on, in the cache's order
        files = [Path(line) for line in listed.read_text().splitlines()]
        source = str(listed)
    else:                           # a run from before the list: it trained on the split
        files = [pair.image for pair in find_pairs(root, split)]
        source = f"{root} split '{split}'"
    if len(files) != len(logits):
        raise DatasetError(f"{logits_cache} holds {len(logits)} entries but {source} has {len(files)} images")
    chosen = np.random.default_rng(seed).choice(len(files), size=min(count, len(files)), replace=False)
    samples = []
    for index in sorted(chosen):
        bgr = cv2.imread(str(files[index]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"calibration image {files[index]} (listed in {source}) cannot be read; "
                               "convert where the refiner's training data is")
        rgb = cv2.cvtColor(resize_image(bgr, input_hw), cv2.COLOR_BGR2RGB)
        sample = [rgb.astype(np.float32), np.asarray(logits[index], np.float32)]
        if temporal:
            sample.append(probabilities_at(sample[1], input_hw))
        samples.append(sample)
    return samples


Progress = Callable[[str, int, int], None]   # (what, done, total): calibration and validation report through it


def _representative(samples: list, names: list[str], progress: Progress | None = None) -> Callable[[], Iterator]:
    """Each sample is one image, or a list of arrays in ``names`` order; several inputs go by
    name, since the converted model orders its input tensors its own way."""
    def generate() -> Iterator:
        for done, sample in enumerate(samples, 1):
            if progress is not None:
                progress("calibrating", done, len(samples))
            if isinstance(sample, list | tuple):
                yield {name: a[None] for name, a in zip(names, sample, strict=True)}
            else:
                yield [sample[None]]
    return generate


def to_tflite(model: keras.Model, target: str, calibration: list[np.ndarray] | None = None, *,
              progress: Progress | None = None,
              labels_output: bool = False, float_layers: int = 0, signed_inputs: bool = False) -> bytes:
    """Convert ``model`` for ``target``; ModelError names the op or layer that cannot be converted.

    ``labels_output`` (argmax fused in) keeps the integer label output as it is.
    ``signed_inputs`` (int8 only) makes the inputs int8 instead of uint8: the graph then needs
    no QUANTIZE op per input, which for a refiner's full-size inputs was 0.5-1 ms of ~6.
    ``float_layers`` (int8 only) keeps the N layers with the largest quantisation error in
    float: MobileNetV2's first depthwise layers, whose BN-folded weights quantise badly, cost
    most of int8's accuracy loss. The model's input and output are then float.
    """
    if target not in TARGETS:
        raise ModelError(f"unknown target '{target}'; choose one of {', '.join(TARGETS)}")
    # A static batch of 1 (EdgeTPU and GPU delegates need static shapes), in inference mode.
    inputs = [keras.Input(t.shape[1:], batch_size=1, name=t.name.split(":")[0]) for t in model.inputs]
    model = keras.Model(inputs, model(inputs if len(inputs) > 1 else inputs[0], training=False), name=model.name)
    specs = [tf.TensorSpec([1, *t.shape[1:]], tf.float32, name=t.name.split(":")[0]) for t in model.inputs]
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        signature = [specs] if len(specs) > 1 else specs      # several inputs arrive as one list
        model.export(str(saved), format="tf_saved_model", verbose=False, input_signature=signature)
        names = [s.name for s in specs]

        def make_converter(io_types: bool = True, samples: list | None = None) -> tf.lite.TFLiteConverter:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            if target == "float16":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            elif target == "dynamic":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            elif target in ("int8", "edgetpu"):
                if not calibration:
                    raise DatasetError(f"--to {target} needs calibration images: pass --calib-data")
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = _representative(samples or calibration, names, progress)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                if io_types:
                    converter.inference_input_type = tf.int8 if signed_inputs and target == "int8" else tf.uint8
                    if not labels_output:
                        converter.inference_output_type = tf.uint8 if target == "edgetpu" else tf.int8
            return converter

        try:
            if float_layers and target == "int8":
                debug_samples = calibration[:_DEBUG_SAMPLES]
                ranking = make_converter(False, debug_samples)     # ranking needs no full calibration
                return _selectively_quantised(ranking, make_converter, float_layers,
                                              _representative(debug_samples, names))
            return make_converter().convert()
        except SegrefineError:
            raise
        except Exception as exc:  # the converter raises ConverterError, RuntimeError, ValueError...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"conversion to {target} failed: {first}") from exc


def _selectively_quantised(ranking: tf.lite.TFLiteConverter, make_converter: Callable[[bool], tf.lite.TFLiteConverter],
                           count: int, dataset: Callable[[], Iterator]) -> bytes:
    """Rank layers by quantisation error (RMSE in units of the layer's scale, with TFLite's
    QuantizationDebugger) and convert again with the worst ``count`` left in float.

    Each step gets a fresh converter (one that has been through the debugger yields tensor
    names the denylist does not match, and the denylist then silently does nothing); the
    ranking runs with float I/O. The result has float I/O whatever is asked.
    """
    def converter_with_float_ops() -> tf.lite.TFLiteConverter:
        converter = make_converter(True)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter

    debugger = tf.lite.experimental.QuantizationDebugger(converter=ranking, debug_dataset=dataset)
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    buffer.seek(0)
    rows = [r for r in csv.DictReader(buffer) if r.get("mean_squared_error") and float(r.get("scale") or 0) > 0]
    if not rows:
        raise ModelError("the quantisation debugger reported no layer statistics; convert without --float-layers")
    # Error in units of the layer's quantisation step: comparable across layers of any range.
    worst = sorted(rows, key=lambda r: -float(r["mean_squared_error"]) ** 0.5 / float(r["scale"]))[:count]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=[r["tensor_name"] for r in worst])
    selective = tf.lite.experimental.QuantizationDebugger(converter=converter_with_float_ops(), debug_dataset=dataset,
                                                          debug_options=options)
    return selective.get_nondebug_quantized_model()


def input_names(tflite: bytes) -> list[str]:
    """The model's input names in tensor order ('image', 'logits'...), from the converted model."""
    from segrefine_edge.backend import resolve_runtime

    _, interpreter_cls, _ = resolve_runtime("auto")
    details = interpreter_cls(model_content=tflite).get_input_details()
    names = []
    for detail in details:
        name = detail["name"].removeprefix("serving_default_").split(":")[0]
        names.append(name)
    return names
