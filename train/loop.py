"""The segmenter training run: strategy, data, model, per-epoch val mIoU, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from segrefine_edge.train.config import TrainConfig, config_to_dict, load_config
from segrefine_edge.train.data import DecodedSplit, class_weights, decode_split, training_dataset
from segrefine_edge.train.losses import segmentation_loss
from segrefine_edge.train.segmenter import build_segmenter

from segrefine_edge.datasets import find_pairs, read_class_info
from segrefine_edge.errors import SegrefineError
from segrefine_edge.metrics import ConfusionMatrix

log = logging.getLogger(__name__)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default | mirrored (every local GPU).

    MultiWorkerMirroredStrategy is not offered: Keras 3.15's fit() fails under it before the
    first step (strategy.reduce on a PerReplica batch, then on a scalar loss with axis=0).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise SegrefineError(f"unknown strategy '{name}'; use default or mirrored")


def make_schedule(config: TrainConfig, total_steps: int):
    if config.schedule == "poly":
        return keras.optimizers.schedules.PolynomialDecay(config.learning_rate, total_steps, 0.0, power=0.9)
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total_steps)
    raise SegrefineError(f"unknown schedule '{config.schedule}'; use poly or cosine")


def evaluate_split(model: keras.Model, split: DecodedSplit, num_classes: int, void: int) -> ConfusionMatrix:
    """Score ``model`` (built at its eval size) on a decoded split at the labels' resolution."""
    in_hw = model.input_shape[1:3]

    @tf.function(reduce_retracing=True)
    def predict(image: tf.Tensor, out_hw: tf.Tensor) -> tf.Tensor:
        x = tf.image.resize(tf.cast(image, tf.float32)[None], in_hw, method="bilinear")
        logits = tf.image.resize(model(x, training=False), out_hw, method="bilinear")
        return tf.argmax(logits[0], axis=-1, output_type=tf.int32)

    cm = ConfusionMatrix(num_classes, void)
    for image, mask in zip(split.images, split.masks, strict=True):
        cm.update(mask, predict(image, tf.constant(mask.shape[:2])).numpy())
    return cm


class _EpochEnd(keras.callbacks.Callback):
    """After each epoch: val mIoU with the project's metric, history line, best weights, checkpoint."""

    def __init__(self, run: Path, eval_model: keras.Model, val: DecodedSplit, num_classes: int, void: int,
                 manager: tf.train.CheckpointManager, epoch_var: tf.Variable, best: float) -> None:
        super().__init__()
        self.run, self.eval_model, self.val = run, eval_model, val
        self.num_classes, self.void = num_classes, void
        self.manager, self.epoch_var, self.best = manager, epoch_var, best
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.eval_model.set_weights(self.model.get_weights())
        cm = evaluate_split(self.eval_model, self.val, self.num_classes, self.void)
        miou = cm.miou()
        record = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", float("nan"))) if logs else None,
            "val_miou": miou,
            "val_iou": [None if np.isnan(v) else float(v) for v in cm.iou()],
            "seconds": round(time.monotonic() - self.started, 1),
        }
        with open(self.run / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if miou > self.best:
            self.best = miou
            self.eval_model.save_weights(self.run / "best.weights.h5")
            (self.run / "best.json").write_text(json.dumps(record, indent=1))
        self.epoch_var.assign(epoch + 1)
        self.manager.save()
        log.info("epoch %d loss %.4f val mIoU %.4f (best %.4f)", epoch + 1, record["loss"], miou, self.best)


def _check_resume(run: Path, config: TrainConfig, resume: bool) -> None:
    saved = run / "config.json"
    if saved.exists():
        if not resume:
            raise SegrefineError(f"{run} already holds a run; pass --resume to continue it or choose a new --out")
        if config_to_dict(load_config(saved)) != config_to_dict(config):
            raise SegrefineError(f"{run} was started with a different config; resume it with the same "
                                 "config (see its config.json) or start a new --out")
    elif resume:
        raise SegrefineError(f"nothing to resume in {run}: it has no config.json")


def train_segmenter(config: TrainConfig, run: str | Path, resume: bool = False) -> dict:
    """Train, keeping ``best.weights.h5`` (by val mIoU) and resumable checkpoints in ``run``."""
    strategy = make_strategy(config.strategy)
    run = Path(run)
    _check_resume(run, config, resume)
    if config.backbone_weights and not Path(config.backbone_weights).is_file():
        raise SegrefineError(f"backbone weights {config.backbone_weights} not found; pass --backbone-weights "
                             "PATH (see ../shared/weights) or backbone_weights=null to start from scratch")
    keras.utils.set_random_seed(config.seed)
    info = read_class_info(config.data)
    void = info.void if info and info.void is not None else 255
    num_classes = config.model.num_classes
    train = decode_split(find_pairs(config.data, config.train_split), num_classes, void)
    val = decode_split(find_pairs(config.data, config.val_split), num_classes, void)
    run.mkdir(parents=True, exist_ok=True)         # only once the inputs are known good
    (run / "config.json").write_text(json.dumps(config_to_dict(config), indent=1))
    if config.val_limit:
        val = DecodedSplit(val.images[: config.val_limit], val.masks[: config.val_limit], val.skipped)
    steps = config.steps_per_epoch or len(train.images) // config.batch

    with strategy.scope():
        model = build_segmenter(config.model, config.augment.crop_hw, config.backbone_weights)
        optimizer = keras.optimizers.AdamW(make_schedule(config, steps * config.epochs), weight_decay=config.weight_decay)
        weights = class_weights(train, num_classes, config.class_weighting)
        model.compile(optimizer=optimizer, loss=segmentation_loss(num_classes, weights, config.ohem_fraction))
        optimizer.build(model.trainable_variables)   # now, so checkpoints can restore its slots
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    eval_model = build_segmenter(config.model, config.eval_hw)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    manager = tf.train.CheckpointManager(ckpt, run / "checkpoints", max_to_keep=2)
    best = -1.0
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).expect_partial()
        if (run / "best.json").exists():
            best = json.loads((run / "best.json").read_text())["val_miou"]
    dataset = training_dataset(train, config.augment, config.batch, void, config.seed)
    callbacks = [
        _EpochEnd(run, eval_model, val, num_classes, void, manager, epoch_var, best),
        keras.callbacks.TensorBoard(run / "tensorboard", update_freq="epoch"),
    ]
    model.fit(dataset, epochs=config.epochs, steps_per_epoch=steps, initial_epoch=int(epoch_var.numpy()),
              callbacks=callbacks, verbose=2)
    return json.loads((run / "best.json").read_text()) if (run / "best.json").exists() else {}
