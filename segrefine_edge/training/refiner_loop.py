"""Train the refiner against a frozen segmenter: cross-entropy with a boundary term, plus
(optionally) a hinge-loss conditional PatchGAN with two time-scale learning rates."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from segrefine_edge.datasets import Pair, find_pairs, read_class_info
from segrefine_edge.errors import SegrefineError
from segrefine_edge.metrics import BoundaryScores, ConfusionMatrix
from segrefine_edge.preprocess import resize_image
from segrefine_edge.training.averaging import averaged_weights, check_momentum, ema_options
from segrefine_edge.training.config import load_config
from segrefine_edge.training.data import DecodedSplit, class_weights, decode_split
from segrefine_edge.training.deeplab import build_segmenter, decoder_logits
from segrefine_edge.training.folds import fold_of
from segrefine_edge.training.losses import lovasz_softmax
from segrefine_edge.training.refiner_data import (
    FLOW_RESIDUAL,
    RefinerSplit,
    batches,
    probabilities_at,
    refiner_split,
    segmenter_logits,
)
from segrefine_edge.training.refiner_net import RefinerConfig, build_discriminator, build_generator

log = logging.getLogger(__name__)


@dataclass
class RefinerTrainConfig:
    segmenter: str = "runs/camvid_mnv2_os16"
    data: str = "../shared/data/camvid"
    model: RefinerConfig = dataclasses.field(default_factory=RefinerConfig)
    steps: int = 2000
    batch: int = 8
    lr_generator: float = 2e-4
    lr_discriminator: float = 4e-4      # two time-scale update rule: D learns faster
    adversarial_weight: float = 0.0     # 0: cross-entropy only; the GAN refiner uses ~0.001-0.01
    boundary_weight: float = 2.0        # extra CE weight within 2 px of a ground-truth boundary
    lovasz_weight: float = 0.0          # + this x Lovasz-softmax: every class counts alike, as in mean IoU
    class_weighting: str = "none"       # or median / sqrt_median: the thin classes the segmenter misses
    label_smoothing: float = 0.1        # softened real maps, so confidence alone does not give fakes away
    real_share: float = 0.7             # real segmenter outputs vs perturbed ground truth
    flow_residual: float = FLOW_RESIDUAL  # temporal: motion left after flow alignment
    # Segmenter runs trained with one fold of the training split left out (train/folds.py), one
    # per fold: their outputs on the fold they never saw make ``heldout_share`` of the real inputs
    heldout_segmenters: list[str] = dataclasses.field(default_factory=list)
    heldout_share: float = 0.5
    eval_every: int = 250
    # > 0: the generator's weights are averaged (Keras' optimizer EMA); checkpoints are scored and
    # kept with the average, and the raw weights' scores are logged beside them
    ema_momentum: float = 0.0
    seed: int = 0


def _frozen_segmenter(source: Path, run: Path, num_classes: int
                      ) -> tuple[Callable[[np.ndarray], np.ndarray], Path, Path]:
    """A function from an RGB image to the segmenter's logits, the folder its outputs are
    cached in, and the file whose modification time marks that cache (a retrained segmenter
    gets new inputs).

    A training run folder gives the float Keras model (its cache is shared by every refiner
    trained on it); a .tflite file gives the deployed model through the runtime, so the
    refiner learns the errors the quantised model really makes.
    """
    if source.suffix == ".tflite":
        if not source.is_file():
            raise SegrefineError(f"segmenter model {source} does not exist")
        from segrefine_edge.segmenter import Segmenter

        segmenter = Segmenter.open(source)
        kind, channels = segmenter.contract.output_kind, segmenter.output.shape[-1]
        if kind not in ("logits", "probabilities") or channels != num_classes:
            raise SegrefineError(f"{source} gives {kind} with {channels} channels; the refiner needs "
                                 f"logits or probabilities for {num_classes} classes")

        def predict(image: np.ndarray) -> np.ndarray:
            scores = segmenter.scores(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            return scores.real() if kind == "logits" else np.log(np.maximum(scores.real(), 1e-6))
        return predict, run, source
    if not (source / "best.weights.h5").is_file():
        raise SegrefineError(f"{source} holds no trained segmenter (best.weights.h5) and is no .tflite model; "
                             "train one first or pass a .tflite segmenter")
    config = load_config(source / "config.json")
    model = build_segmenter(config.model, config.eval_hw)
    model.load_weights(source / "best.weights.h5")
    logits = keras.Model(model.inputs, decoder_logits(model))
    h, w = config.eval_hw

    def predict(image: np.ndarray) -> np.ndarray:
        x = resize_image(image, (h, w)).astype(np.float32)
        return np.asarray(logits(x[None], training=False))[0]
    return predict, source, source / "best.weights.h5"


def _heldout_logits(runs: list[str], split: DecodedSplit, pairs: list[Pair], num_classes: int,
                    hw: tuple[int, int]) -> np.ndarray:
    """Each training image's logits from the segmenter run that left its fold out. The runs'
    configs are checked to cover every image before any segmenter runs."""
    skipped = set(split.skipped)
    position: dict[int, int] = {}               # pair index -> index into split.images
    for index, pair in enumerate(pairs):
        if str(pair.image) not in skipped:
            position[index] = len(position)
    plan, covered = [], set()
    for name in runs:
        run = Path(name)
        config = load_config(run / "config.json")
        if config.folds < 2:
            raise SegrefineError(f"segmenter run {run} trained on the whole split: it has no held-out fold; pass runs "
                                 "trained with --set folds=2 --set held_out=K, one per fold")
        # the folds the segmenter run cut, over every pair (readable or not)
        chosen = [position[i] for i, fold in enumerate(fold_of(pairs, config.folds))
                  if fold == config.held_out and i in position]
        plan.append((run, chosen))
        covered.update(chosen)
    missing = [pairs[i].image.name for i, kept in position.items() if kept not in covered]
    if missing:
        raise SegrefineError(f"{len(missing)} training images ({missing[0]}, ...) are in no held-out fold of "
                             f"{', '.join(runs)}; pass one segmenter run per fold")
    heldout: list[np.ndarray | None] = [None] * len(position)
    for run, chosen in plan:
        predict, cache_dir, weights = _frozen_segmenter(run, run, num_classes)
        cache = cache_dir / f"refiner_inputs_heldout_{hw[0]}x{hw[1]}_{int(weights.stat().st_mtime)}.npy"
        logits = segmenter_logits(predict, DecodedSplit([split.images[i] for i in chosen], [], []), hw, cache)
        for index, values in zip(chosen, logits, strict=True):
            heldout[index] = values
    return np.stack(heldout)


def _ce(refined: tf.Tensor, mask: tf.Tensor, num_classes: int, boundary_weight: float,
        class_weight: np.ndarray | None = None) -> tf.Tensor:
    valid = mask < num_classes
    safe = tf.where(valid, mask, 0)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, refined)
    m = tf.cast(safe, tf.float32)[..., None]
    near_edge = tf.nn.max_pool2d(m, 5, 1, "SAME") != -tf.nn.max_pool2d(-m, 5, 1, "SAME")
    weight = tf.cast(valid, tf.float32) * (1.0 + boundary_weight * tf.cast(near_edge[..., 0], tf.float32))
    if class_weight is not None:
        weight *= tf.gather(tf.constant(class_weight, tf.float32), safe)
    return tf.reduce_sum(ce * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)


def _real_map(mask: tf.Tensor, fake: tf.Tensor, num_classes: int, smoothing: float) -> tf.Tensor:
    """Smoothed one-hot ground truth; void pixels copy the fake map, so they tell D nothing."""
    onehot = tf.one_hot(tf.where(mask < num_classes, mask, 0), num_classes)
    real = onehot * (1 - smoothing) + smoothing / num_classes
    return tf.where((mask < num_classes)[..., None], real, tf.stop_gradient(fake))


def score(generator: keras.Model, data: RefinerSplit, truth: list[np.ndarray], num_classes: int,
          void: int) -> dict[str, float]:
    """mIoU and Boundary F of the segmenter alone and refined, at the label resolution.

    A temporal refiner runs over the split in order, fed its own previous output moved along
    the optical flow as at run time (the first image gets its own input's probabilities):
    CamVid's val is one sequence.
    """
    from segrefine_edge.motion import FlowTracker, pull_back

    temporal = len(generator.inputs) == 3
    motion = FlowTracker(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    region = {k: ConfusionMatrix(num_classes, void) for k in ("segmenter", "refined")}
    boundary = {k: BoundaryScores(num_classes, void, curve=()) for k in ("segmenter", "refined")}
    previous = None
    for i in range(len(data.images)):
        feeds = [data.images[i][None].astype(np.float32), data.logits[i][None].astype(np.float32)]
        if temporal:
            flow = motion.flow_to_previous(cv2.cvtColor(data.images[i], cv2.COLOR_RGB2GRAY))
            current = probabilities_at(data.logits[i], data.images[i].shape[:2])
            feeds.append((current if previous is None else pull_back(previous, flow, cv2.INTER_LINEAR)[0])[None])
        refined = np.asarray(generator(feeds, training=False))[0]
        previous = tf.nn.softmax(refined).numpy()
        mask = truth[i]
        for key, logits in (("segmenter", data.logits[i].astype(np.float32)), ("refined", refined)):
            labels = np.argmax(cv2.resize(logits, mask.shape[::-1], interpolation=cv2.INTER_LINEAR), -1)
            region[key].update(mask, labels)
            boundary[key].update(mask, labels)
    return {f"{k}_{m}": v for k in region for m, v in
            (("miou", region[k].miou()), ("boundary_f", boundary[k].mean_boundary_f()))}


def train_refiner(config: RefinerTrainConfig, run: str | Path) -> dict:
    run = Path(run)
    if (run / "config.json").exists():
        raise SegrefineError(f"{run} already holds a run; choose a new --out")
    check_momentum(config.ema_momentum)
    keras.utils.set_random_seed(config.seed)
    c = config.model.num_classes
    predict, cache_dir, segmenter_file = _frozen_segmenter(Path(config.segmenter), run, c)
    info = read_class_info(config.data)
    void = info.void if info and info.void is not None else 255
    pairs = {name: find_pairs(config.data, name) for name in ("train", "val")}
    splits = {name: decode_split(pairs[name], c, void) for name in ("train", "val")}
    pixel_weights = class_weights(splits["train"], c, config.class_weighting)
    heldout = (_heldout_logits(config.heldout_segmenters, splits["train"], pairs["train"], c, config.model.logits_hw)
               if config.heldout_segmenters else None)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"kind": "refiner", **dataclasses.asdict(config)}, indent=1))
    stamp = int(segmenter_file.stat().st_mtime)
    data = {}
    for name, split in splits.items():
        h, w = config.model.logits_hw
        logits = segmenter_logits(predict, split, (h, w), cache_dir / f"refiner_inputs_{name}_{h}x{w}_{stamp}.npy")
        data[name] = refiner_split(split, logits, config.model.input_hw)
    data["train"].heldout_logits = heldout
    generator, discriminator = build_generator(config.model), build_discriminator(config.model)
    g_opt = keras.optimizers.Adam(config.lr_generator, beta_1=0.5, **ema_options(config.ema_momentum))
    g_opt.build(generator.trainable_variables)
    scored = build_generator(config.model) if g_opt.use_ema else generator
    d_opt = keras.optimizers.Adam(config.lr_discriminator, beta_1=0.5)
    adversarial = config.adversarial_weight > 0

    @tf.function
    def step(features, mask):
        image = features[0]
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            refined = generator(list(features), training=True)
            ce = _ce(refined, mask, c, config.boundary_weight, pixel_weights)
            supervised = ce + config.lovasz_weight * lovasz_softmax(refined, mask, c) if config.lovasz_weight else ce
            fake = tf.nn.softmax(refined)
            g_adv = d_loss = d_acc = tf.constant(0.0)
            if adversarial:
                real = _real_map(mask, fake, c, config.label_smoothing)
                d_real = discriminator([image, real], training=True)
                d_fake_for_d = discriminator([image, tf.stop_gradient(fake)], training=True)
                d_loss = tf.reduce_mean(tf.nn.relu(1 - d_real)) + tf.reduce_mean(tf.nn.relu(1 + d_fake_for_d))
                d_acc = 0.5 * (tf.reduce_mean(tf.cast(d_real > 0, tf.float32))
                               + tf.reduce_mean(tf.cast(d_fake_for_d < 0, tf.float32)))
                g_adv = -tf.reduce_mean(discriminator([image, fake], training=True))
            g_loss = supervised + config.adversarial_weight * g_adv
        g_grads = g_tape.gradient(g_loss, generator.trainable_variables)
        g_opt.apply_gradients(zip(g_grads, generator.trainable_variables, strict=True))
        d_norm = tf.constant(0.0)
        if adversarial:
            d_grads = d_tape.gradient(d_loss, discriminator.trainable_variables)
            d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables, strict=True))
            d_norm = tf.linalg.global_norm(d_grads)
        return {"ce": ce, "g_adv": g_adv, "d_loss": d_loss, "d_accuracy": d_acc,
                "g_grad_norm": tf.linalg.global_norm(g_grads), "d_grad_norm": d_norm}

    writer = tf.summary.create_file_writer(str(run / "tensorboard"))
    stream = batches(data["train"], config.batch, c, config.real_share, config.seed, config.model.temporal,
                     config.flow_residual, config.heldout_share)
    truth = splits["val"].masks
    best, started = None, time.monotonic()
    for i in range(1, config.steps + 1):
        *features, mask = (tf.constant(a) for a in next(stream))
        logs = {k: float(v) for k, v in step(features, mask).items()}
        if i % 25 == 0:
            with writer.as_default(step=i):
                for k, v in logs.items():
                    tf.summary.scalar(k, v)
        if i % config.eval_every == 0 or i == config.steps:
            record = {"step": i, "seconds": round(time.monotonic() - started, 1), **logs}
            if g_opt.use_ema:
                raw = score(generator, data["val"], truth, c, void)
                record |= {f"raw_{k}": v for k, v in raw.items() if k.startswith("refined")}
                scored.set_weights(averaged_weights(generator, g_opt))
            scores = score(scored, data["val"], truth, c, void)
            record |= scores
            with open(run / "history.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            log.info("step %d ce %.4f d_acc %.2f | val mIoU %.4f -> %.4f, BF %.4f -> %.4f", i, logs["ce"],
                     logs["d_accuracy"], scores["segmenter_miou"], scores["refined_miou"],
                     scores["segmenter_boundary_f"], scores["refined_boundary_f"])
            if best is None or scores["refined_boundary_f"] + scores["refined_miou"] > best["refined_boundary_f"] + best["refined_miou"]:
                best = record
                scored.save_weights(run / "best.weights.h5")
                (run / "best.json").write_text(json.dumps(record, indent=1))
    return best or {}
