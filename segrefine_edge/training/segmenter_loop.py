"""The segmenter training run: strategy, data, model, per-epoch val mIoU, checkpoints, resume."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from segrefine_edge.datasets import find_pairs, read_class_info
from segrefine_edge.errors import SegrefineError
from segrefine_edge.metrics import SplitScorer
from segrefine_edge.training.averaging import averaged_weights, check_momentum, ema_options
from segrefine_edge.training.config import TrainConfig, config_to_dict
from segrefine_edge.training.data import DecodedSplit, class_weights, decode_split, training_dataset
from segrefine_edge.training.deeplab import SegmenterConfig, build_segmenter
from segrefine_edge.training.folds import split_by_sequence, without_fold
from segrefine_edge.training.losses import segmentation_loss
from segrefine_edge.training.run_folder import RunFolder, restore_latest

log = logging.getLogger(__name__)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default | mirrored (every local GPU) | multi-worker (every machine in TF_CONFIG)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise SegrefineError("--strategy multi-worker needs TF_CONFIG naming the cluster and this worker, e.g. "
                                 '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", '
                                 '"index": 0}}; start the same command on every worker')
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise SegrefineError(f"unknown strategy '{name}'; use default, mirrored or multi-worker")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Worker 0 (or the only process) writes the run; the others only train."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is None or resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0)


def make_schedule(config: TrainConfig, total_steps: int):
    if config.schedule == "poly":
        return keras.optimizers.schedules.PolynomialDecay(config.learning_rate, total_steps, 0.0, power=0.9)
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, total_steps)
    raise SegrefineError(f"unknown schedule '{config.schedule}'; use poly or cosine")


def evaluate_split(model: keras.Model, split: DecodedSplit, num_classes: int, void: int) -> SplitScorer:
    """Score ``model`` (built at its eval size) on a decoded split at the labels' resolution."""
    in_hw = model.input_shape[1:3]

    @tf.function(reduce_retracing=True)
    def predict(image: tf.Tensor, out_hw: tf.Tensor) -> tf.Tensor:
        x = tf.image.resize(tf.cast(image, tf.float32)[None], in_hw, method="bilinear")
        logits = tf.image.resize(model(x, training=False), out_hw, method="bilinear")
        return tf.argmax(logits[0], axis=-1, output_type=tf.int32)

    scorer = SplitScorer(num_classes, void, boundary=False)     # mIoU only: it runs every epoch
    for image, mask in zip(split.images, split.masks, strict=True):
        scorer.update(mask, predict(image, tf.constant(mask.shape[:2])).numpy())
    return scorer


class _EpochEnd:
    """After each epoch (chief only): mIoU with the project's metric, history line, kept weights.

    ``key`` names the score: ``val_miou`` (the best epoch is kept); under the held-out-sequence
    protocol, ``held_out_miou`` (the last epoch is kept: choosing an epoch on the held-out drive
    would flatter it exactly as val flattered the recipe); in a final fit, ``seen_val_miou`` (val
    was trained on, so its score chooses nothing: the last epoch is kept).
    """

    def __init__(self, folder: RunFolder, eval_model: keras.Model, scored: DecodedSplit, num_classes: int,
                 void: int, key: str = "val_miou") -> None:
        self.folder, self.eval_model, self.scored = folder, eval_model, scored
        self.num_classes, self.void, self.key = num_classes, void, key
        self.writer = folder.tensorboard()

    def _score(self, weights: list[np.ndarray]) -> SplitScorer:
        self.eval_model.set_weights(weights)
        return evaluate_split(self.eval_model, self.scored, self.num_classes, self.void)

    def __call__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, epoch: int, loss: float,
                 seconds: float) -> None:
        record: dict = {"epoch": epoch, "loss": loss}
        if optimizer.use_ema:
            # the raw weights' score beside the averaged one's: the same run shows what averaging adds
            record[f"{self.key}_raw"] = self._score(model.get_weights()).miou()
        cm = self._score(averaged_weights(model, optimizer))
        miou = cm.miou()
        record |= {
            self.key: miou,
            self.key.replace("miou", "iou"): [None if np.isnan(v) else float(v) for v in cm.iou()],
            "seconds": round(seconds, 1),
        }
        self.folder.append_history(record)
        with self.writer.as_default(step=epoch):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar(self.key, miou)
        rank = (lambda r: r[self.key]) if self.key == "val_miou" else (lambda r: r["epoch"])
        self.folder.keep_if_best(record, rank, self.eval_model.save_weights)
        log.info("epoch %d loss %.4f %s %.4f (kept: epoch %d)", epoch, loss, self.key, miou,
                 self.folder.best_record()["epoch"])


def _training_and_scored_pairs(config: TrainConfig) -> tuple[list, list, str]:
    """What the run trains on, what it scores each epoch, and the name of that score."""
    if config.final_fit:
        if config.held_out_sequence is not None or config.folds > 1:
            raise SegrefineError("final_fit trains on every labelled image; it cannot also leave a sequence or a "
                                 "fold out: set one of them")
        seen = find_pairs(config.data, config.val_split)
        return find_pairs(config.data, config.train_split) + seen, seen, "seen_val_miou"
    if config.held_out_sequence is None:
        train_pairs = without_fold(find_pairs(config.data, config.train_split), config.folds, config.held_out)
        return train_pairs, find_pairs(config.data, config.val_split), "val_miou"
    if config.folds > 1:
        raise SegrefineError("held_out_sequence and folds > 1 both leave images out; set one of them")
    pools = [find_pairs(config.data, config.train_split), find_pairs(config.data, config.val_split)]
    train_pairs, held_out = split_by_sequence(pools, config.held_out_sequence)
    return train_pairs, held_out, "held_out_miou"


def train_segmenter(config: TrainConfig, run: str | Path, resume: bool = False) -> dict:
    """Train, keeping ``best.weights.h5`` (the best epoch by val mIoU; under the held-out-sequence
    protocol or in a final fit, the last) and resumable checkpoints in ``run``."""
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    folder = RunFolder(run, "segmenter", config_to_dict(config))
    if chief:
        folder.open(resume)
    check_momentum(config.ema_momentum)
    if config.backbone_weights and not Path(config.backbone_weights).is_file():
        raise SegrefineError(f"backbone weights {config.backbone_weights} not found; pass --backbone-weights "
                             "PATH (see ../shared/weights) or backbone_weights=null to start from scratch")
    if config.init_weights and not Path(config.init_weights).is_file():
        raise SegrefineError(f"init_weights {config.init_weights} not found; pass a finished run's "
                             "best.weights.h5")
    keras.utils.set_random_seed(config.seed)
    info = read_class_info(config.data)
    void = info.void if info and info.void is not None else 255
    num_classes = config.model.num_classes
    train_pairs, scored_pairs, score_key = _training_and_scored_pairs(config)
    log.info("training on %d images, scoring %d each epoch as %s", len(train_pairs), len(scored_pairs), score_key)
    train = decode_split(train_pairs, num_classes, void)
    val = decode_split(scored_pairs, num_classes, void)
    if config.val_limit:
        val = DecodedSplit(val.images[: config.val_limit], val.masks[: config.val_limit], val.skipped)
    weights = class_weights(train, num_classes, config.class_weighting)
    checkpoints = None if chief else Path(tempfile.mkdtemp(prefix="segrefine-worker-"))
    steps = config.steps_per_epoch or len(train.images) // config.batch

    with strategy.scope():
        # ImageNet weights only when no finished run's weights will replace them all
        model = build_segmenter(config.model, config.augment.crop_hw,
                                None if config.init_weights else config.backbone_weights)
        if config.init_weights:
            _load_init_weights(model, config.model, config.init_weights)
        optimizer = keras.optimizers.AdamW(make_schedule(config, steps * config.epochs), weight_decay=config.weight_decay,
                                           **ema_options(config.ema_momentum))
        optimizer.build(model.trainable_variables)   # now, so checkpoints can restore its slots
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Only the chief writes the run; other workers keep their (required) checkpoint copies aside.
    if chief and not resume:
        folder.create()                                # only once the inputs and weights are known good
    loss_fn = segmentation_loss(num_classes, weights, config.ohem_fraction, config.lovasz_weight)
    manager = folder.checkpoints(tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var), checkpoints)
    restore_latest(manager, resume)
    epoch_end = (_EpochEnd(folder, build_segmenter(config.model, config.eval_hw), val, num_classes, void, score_key)
                 if chief else None)
    batches = iter(strategy.distribute_datasets_from_function(
        lambda ctx: training_dataset(train, config.augment, ctx.get_per_replica_batch_size(config.batch), void,
                                     config.seed + ctx.input_pipeline_id, num_classes)))
    train_step = _train_step(strategy, model, optimizer, loss_fn)
    for epoch in range(int(epoch_var.numpy()) + 1, config.epochs + 1):
        started, total = time.monotonic(), 0.0
        for _ in range(steps):
            total += float(train_step(batches))
        if epoch_end is not None:
            epoch_end(model, optimizer, epoch, total / steps, time.monotonic() - started)
        epoch_var.assign(epoch)
        manager.save()                               # every worker, or MultiWorkerMirroredStrategy hangs
    return (folder.best_record() or {}) if chief else {}


def _load_init_weights(model: keras.Model, model_config: SegmenterConfig, path: str) -> None:
    """Copy a finished run's weights into ``model``, layer by layer, through a twin that loads them.

    A model with a stride-2 stage also starts from a stride-4 run's weights (that stage keeps its
    fresh, zero-output weights, so it starts from nearly that run's predictions): Keras files key
    weights by layer type and order, not name, so they load into a twin of that run's architecture
    and move over by name. Keras names a mismatched layer or shape in a ValueError; the user needs
    only its first line.
    """
    hw = tuple(int(d) for d in model.inputs[0].shape[1:3])
    candidates = [model_config] + ([dataclasses.replace(model_config, fine_filters=0)] if model_config.fine_filters else [])
    errors = []
    for candidate in candidates:
        twin = build_segmenter(candidate, hw)
        try:
            twin.load_weights(path)
        except ValueError as exc:
            errors.append(exc)
            continue
        for layer in twin.layers:
            if layer.weights:
                model.get_layer(layer.name).set_weights(layer.get_weights())
        return
    raise SegrefineError(f"init_weights {path} do not fit this model ({str(errors[0]).splitlines()[0]}); "
                         "start from a run with the same model config") from errors[0]


def _train_step(strategy: tf.distribute.Strategy, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                loss_fn) -> tf.types.experimental.PolymorphicFunction:
    """One synchronous step on every replica: each averages its own pixels' loss, gradients
    are summed across replicas (so each loss is divided by their number), the mean comes back.

    A loop of our own rather than Keras' fit(): under MultiWorkerMirroredStrategy Keras 3.15's
    fit() fails before the first step (it reduces a PerReplica batch), and one loop for every
    strategy means the multi-worker test exercises the code single-machine training runs.
    """
    replicas = strategy.num_replicas_in_sync

    def replica_step(image: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(mask, model(image, training=True))
            scaled = loss / replicas
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def step(iterator) -> tf.Tensor:
        image, mask = next(iterator)
        losses = strategy.run(replica_step, (image, mask))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, losses, axis=None)

    return step
