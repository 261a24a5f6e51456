"""Load what `convert` converts: a training run folder, a ``.keras`` file, or a SavedModel.

A run folder (``config.json`` + ``best.weights.h5``, as `train segmenter` writes) is rebuilt at
the export size, so one training run can be exported at any input size divisible by the
output stride, and carries its dataset's class names and palette into the metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras

from segrefine_edge.datasets import read_class_info
from segrefine_edge.errors import ModelError
from segrefine_edge.training.config import config_from_dict
from segrefine_edge.training.deeplab import build_segmenter, decoder_logits


@dataclass
class ExportSource:
    """A float model whose output is logits, plus what the metadata needs to say about it."""

    model: keras.Model
    name: str
    labels: list[str]
    palette: list[tuple[int, int, int]] | None
    void: int | None
    data: str | None
    recipe: dict | None
    role: str = "segmenter"
    calibration_inputs: Path | None = None   # a refiner's cached segmenter logits of its training images


def _decoder_resolution(model: keras.Model) -> keras.Model:
    """The same network ending at the decoder's logits (a quarter of the input, or half with a
    stride-2 stage), before the final bilinear upsample: the runtime upsamples scores straight
    to the frame size anyway, so the in-graph upsample only costs time (and is the op EdgeTPUs
    struggle with)."""
    logits = decoder_logits(model)
    if logits is None:
        return model
    return keras.Model(model.inputs, logits, name=f"{model.name}_decoder")


def load_source(path: str | Path, input_hw: tuple[int, int] | None, full_resolution: bool) -> ExportSource:
    """Load ``path`` as a float Keras model, rebuilt at ``input_hw`` when it is a run folder."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file() and _is_refiner_run(path):
        return _from_refiner_run(path)
    if path.is_dir() and (path / "config.json").is_file():
        model, source = _from_run(path, input_hw)
    elif path.suffix == ".keras" and path.is_file():
        try:
            model = keras.saving.load_model(path, compile=False)
        except (ValueError, OSError) as exc:
            raise ModelError(f"{path} is not a loadable Keras model ({exc})") from exc
        source = ExportSource(model, path.stem, [], None, None, None, None)
    elif path.is_dir() and (path / "saved_model.pb").is_file():
        try:
            model = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        except (ValueError, OSError) as exc:
            raise ModelError(f"{path} is a SavedModel without a usable serving_default signature ({exc})") from exc
        if input_hw is None:
            raise ModelError(f"{path} is a SavedModel, whose input size is not fixed; pass --input-size HxW")
        inputs = keras.Input((*input_hw, 3))
        outputs = model(inputs)
        outputs = next(iter(outputs.values())) if isinstance(outputs, dict) else outputs
        source = ExportSource(keras.Model(inputs, outputs), path.name, [], None, None, None, None)
    else:
        raise ModelError(f"{path} is not a training run folder (config.json + best.weights.h5), a .keras file "
                         "or a SavedModel folder; pass what `segrefine-edge train` wrote")
    if not full_resolution:
        source.model = _decoder_resolution(source.model)
    return source


def _from_run(run: Path, input_hw: tuple[int, int] | None) -> tuple[keras.Model, ExportSource]:
    weights = run / "best.weights.h5"
    if not weights.is_file():
        raise ModelError(f"run {run} has no best.weights.h5 yet; wait for an epoch to finish or pass another run")
    recipe = json.loads((run / "config.json").read_text())
    config = config_from_dict(recipe)
    hw = tuple(input_hw or config.eval_hw)
    try:
        model = build_segmenter(config.model, hw)
    except ValueError as exc:
        raise ModelError(f"cannot export at {hw[1]}x{hw[0]}: {exc}") from exc
    model.load_weights(weights)
    info = read_class_info(config.data) if Path(config.data).is_dir() else None
    labels = info.names if info else [f"class{i}" for i in range(config.model.num_classes)]
    best = run / "best.json"
    if best.is_file():
        recipe["best"] = json.loads(best.read_text())
    return model, ExportSource(model, run.name, labels, info.palette_rgb if info else None,
                               info.void if info else None, config.data, recipe)


def _is_refiner_run(run: Path) -> bool:
    return json.loads((run / "config.json").read_text()).get("kind") == "refiner"


# What a refiner run folder written before a model option existed was trained with.
_KEYS_BEFORE_THEY_EXISTED = {"softmax_stem": True, "logits_stride": 1, "head": "conv3x3"}


def _from_refiner_run(run: Path) -> ExportSource:
    """A refiner run: the generator at its training size; calibration reuses the segmenter
    logits cached for training, so the int8 ranges match what the refiner will be fed."""
    from segrefine_edge.training.refiner_net import RefinerConfig, build_generator

    recipe = json.loads((run / "config.json").read_text())
    if not (run / "best.weights.h5").is_file():
        raise ModelError(f"refiner run {run} has no best.weights.h5 yet")
    model_config = {**_KEYS_BEFORE_THEY_EXISTED, **recipe["model"]}
    model_config["input_hw"] = tuple(model_config["input_hw"])
    config = RefinerConfig(**model_config)
    generator = build_generator(config)
    generator.load_weights(run / "best.weights.h5")
    cache = run / "inputs" / "train.npy"      # the segmenter outputs the refiner was trained on
    info = read_class_info(recipe["data"]) if Path(recipe["data"]).is_dir() else None
    labels = info.names if info else [f"class{i}" for i in range(config.num_classes)]
    return ExportSource(generator, run.name, labels, info.palette_rgb if info else None,
                        info.void if info else None, recipe["data"], recipe, role="refiner",
                        calibration_inputs=cache if cache.is_file() else None)


def fuse_refiner(segmenter: ExportSource, refiner_run: str | Path) -> ExportSource:
    """One graph: the segmenter's quarter-resolution logits (resized to the refiner's logits
    input where that differs) refined with the frame pooled to the refiner's size. One model
    to deploy, one invoke, and no float round trip between the two on an accelerator."""
    refiner = load_source(refiner_run, None, False)
    if refiner.role != "refiner":
        raise ModelError(f"{refiner_run} is not a refiner run; pass what `train refiner` wrote to --fuse-refiner")
    if len(refiner.model.inputs) != 2:
        raise ModelError(f"{refiner_run} is a temporal refiner: its previous-mask input has no place in one fused "
                         "graph; convert it on its own and pass it to --refiner")
    image = segmenter.model.inputs[0]
    h, w = (int(d) for d in image.shape[1:3])
    rh, rw = (int(d) for d in refiner.model.inputs[0].shape[1:3])
    if h % rh or w % rw or h // rh != w // rw:
        raise ModelError(f"the segmenter's input {w}x{h} is not an integer multiple of the refiner's {rw}x{rh}")
    logits = segmenter.model(image)
    names = [t.name.split(":")[0] for t in refiner.model.inputs]
    lh, lw = (int(d) for d in refiner.model.inputs[names.index("logits")].shape[1:3])
    if tuple(logits.shape[1:3]) != (lh, lw):
        logits = keras.layers.Resizing(lh, lw, interpolation="bilinear", name="fused_logits_up")(logits)
    small = keras.layers.AveragePooling2D(h // rh, name="fused_image_down")(image)
    refined = refiner.model([small if n == "image" else logits for n in names])
    fused = keras.Model(image, refined, name=f"{segmenter.model.name}_refined")
    return ExportSource(fused, f"{segmenter.name}+{refiner.name}", segmenter.labels, segmenter.palette,
                        segmenter.void, segmenter.data, {"segmenter": segmenter.recipe, "refiner": refiner.recipe},
                        role="fused")
