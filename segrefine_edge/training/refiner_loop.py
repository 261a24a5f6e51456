"""Train the refiner against a frozen segmenter: cross-entropy with a boundary term, plus
(optionally) a hinge-loss conditional PatchGAN with two time-scale learning rates."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from segrefine_edge.atomic import write_atomic
from segrefine_edge.datasets import Pair, find_pairs, read_class_info
from segrefine_edge.errors import SegrefineError
from segrefine_edge.metrics import SplitScorer
from segrefine_edge.preprocess import resize_image
from segrefine_edge.training.averaging import averaged_weights, check_momentum, ema_options
from segrefine_edge.training.config import load_config
from segrefine_edge.training.data import DecodedSplit, capture_changes, class_weights, decode_split
from segrefine_edge.training.deeplab import build_segmenter, decoder_logits
from segrefine_edge.training.folds import fold_of, held_out_sequences, sequence_of, split_by_sequence
from segrefine_edge.training.losses import boundary_weighted_loss, lovasz_softmax
from segrefine_edge.training.refiner_data import (
    FLOW_RESIDUAL,
    TRAIN_IMAGES,
    RefinerSplit,
    batches,
    probabilities_at,
    refiner_split,
    segmenter_logits,
)
from segrefine_edge.training.refiner_net import RefinerConfig, build_discriminator, build_generator
from segrefine_edge.training.run_folder import RunFolder, restore_latest

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
    # + this x the L1 distance between the discriminator's features of the refined map and of the
    # ground truth (feature matching, as in pix2pixHD): a denser signal than the hinge score
    feature_matching_weight: float = 0.0
    boundary_weight: float = 2.0        # extra CE weight within 2 px of a ground-truth boundary
    lovasz_weight: float = 0.0          # + this x Lovasz-softmax: every class counts alike, as in mean IoU
    class_weighting: str = "none"       # or median / sqrt_median: the thin classes the segmenter misses
    label_smoothing: float = 0.1        # softened real maps, so confidence alone does not give fakes away
    real_share: float = 0.7             # real segmenter outputs vs perturbed ground truth
    flow_residual: float = FLOW_RESIDUAL  # temporal: motion left after flow alignment
    # The segmenter's capture augmentation (augment.capture: exposure, white balance, blur, noise,
    # JPEG, each with this chance) on the refiner's copy of the image only: on a drive in other
    # light the image edges the refiner trusts look different (issue 23). 0 is the shipped recipe.
    capture: float = 0.0
    # Segmenter runs trained with one fold of the training split left out (train/folds.py), one
    # per fold, or with drives left out (held_out_sequence, one or several): their outputs on the
    # images they never saw make ``heldout_share`` of the real inputs
    heldout_segmenters: list[str] = dataclasses.field(default_factory=list)
    heldout_share: float = 0.5
    # The held-out-sequence protocol (issue 22): train and val pooled, this drive left out and
    # scored at every check, the last checkpoint kept. The segmenter must be the run trained
    # with the same drive left out, so neither model has seen it.
    held_out_sequence: str | None = None
    # The shipped refiner's final fit, as the segmenter's (issue 22): train and val pooled, val still
    # scored at every check (logged as "seen val": it was trained on, so a check, never a choice) and the
    # last checkpoint kept. Refused beside held_out_sequence.
    final_fit: bool = False
    eval_every: int = 250
    # > 0: the generator's weights are averaged (Keras' optimizer EMA); checkpoints are scored and
    # kept with the average, and the raw weights' scores are logged beside them
    ema_momentum: float = 0.0
    seed: int = 0


def _frozen_segmenter(source: Path, num_classes: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function from an RGB image to the segmenter's logits.

    A training run folder gives the float Keras model; a .tflite file gives the deployed model
    through the runtime, so the refiner learns the errors the quantised model really makes.
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
        return predict
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
    return predict


def _decoded_pairs(pairs: list[Pair], split: DecodedSplit) -> list[int]:
    """The indices of the pairs ``split`` holds, in its order (decoding skips unreadable ones)."""
    skipped = set(split.skipped)
    return [index for index, pair in enumerate(pairs) if str(pair.image) not in skipped]


def _heldout_plan(runs: list[str], split: DecodedSplit, pairs: list[Pair]) -> list[tuple[Path, list[int]]]:
    """For each segmenter run, the training images (indices into the split) it left out, a fold or
    whole drives; checked to cover every image before any run folder is written or any segmenter runs."""
    # pair index -> index into split.images
    position = {index: kept for kept, index in enumerate(_decoded_pairs(pairs, split))}
    plan, covered = [], set()
    for name in runs:
        run = Path(name)
        config = load_config(run / "config.json")
        if config.held_out_sequence:
            drives = held_out_sequences(config.held_out_sequence)
            left_out = [sequence_of(pair) in drives for pair in pairs]
        elif config.folds >= 2:                  # the folds the run cut, over every pair (readable or not)
            left_out = [fold == config.held_out for fold in fold_of(pairs, config.folds)]
        else:
            raise SegrefineError(f"segmenter run {run} trained on the whole split: it has no held-out fold or drive; "
                                 "pass runs trained with --set folds=2 --set held_out=K, one per fold, or with "
                                 "--set held_out_sequence=DRIVES")
        chosen = [position[i] for i, out in enumerate(left_out) if out and i in position]
        plan.append((run, chosen))
        covered.update(chosen)
    missing = [pairs[i].image.name for i, kept in position.items() if kept not in covered]
    if missing:
        raise SegrefineError(f"{len(missing)} training images ({missing[0]}, ...) are in no held-out fold of "
                             f"{', '.join(runs)}; pass one segmenter run per fold")
    return plan


def _heldout_logits(plan: list[tuple[Path, list[int]]], split: DecodedSplit, num_classes: int, hw: tuple[int, int],
                    inputs: Path) -> np.ndarray:
    """Each training image's logits from the segmenter run that left its fold out, cached in ``inputs``."""
    heldout: list[np.ndarray | None] = [None] * len(split.images)
    for fold, (run, chosen) in enumerate(plan):
        logits = segmenter_logits(_frozen_segmenter(run, num_classes),
                                  DecodedSplit([split.images[i] for i in chosen], [], []), hw,
                                  inputs / f"heldout_{fold}.npy")
        for index, values in zip(chosen, logits, strict=True):
            heldout[index] = values
    return np.stack(heldout)


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
    scorers = {k: SplitScorer(num_classes, void) for k in ("segmenter", "refined")}
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
            scorers[key].update(mask, labels)
    return {f"{k}_{m}": v for k, scorer in scorers.items() for m, v in
            (("miou", scorer.miou()), ("boundary_f", scorer.boundary_f()),
             ("iou", [None if np.isnan(x) else float(x) for x in scorer.iou()]))}


class RefinerGAN(keras.Model):
    """The refiner (generator) and, with an adversarial weight, a hinge-loss conditional PatchGAN
    discriminator, each with its own optimizer (two time-scale learning rates), as the Keras GAN
    examples hold them. Only the generator is exported."""

    def __init__(self, generator: keras.Model, discriminator: keras.Model, config: RefinerTrainConfig,
                 pixel_weights: np.ndarray | None) -> None:
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.settings, self.pixel_weights = config, pixel_weights
        self.num_classes = config.model.num_classes

    def compile(self, g_optimizer: keras.optimizers.Optimizer, d_optimizer: keras.optimizers.Optimizer) -> None:
        super().compile(jit_compile=False)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer

    def call(self, inputs: list[tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.generator(inputs, training=training)

    def train_step(self, data: tuple[tuple[tf.Tensor, ...], tf.Tensor]) -> dict[str, tf.Tensor]:
        """One step of both players: D sees real (smoothed ground truth) and fake (refined) maps
        conditioned on the image; G minimises cross-entropy plus the weighted adversarial term."""
        features, mask = data
        image, c, cfg = features[0], self.num_classes, self.settings
        adversarial = cfg.adversarial_weight > 0 or cfg.feature_matching_weight > 0
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            refined = self.generator(list(features), training=True)
            ce = boundary_weighted_loss(mask, refined, c, cfg.boundary_weight, self.pixel_weights)
            supervised = ce + cfg.lovasz_weight * lovasz_softmax(refined, mask, c) if cfg.lovasz_weight else ce
            fake = tf.nn.softmax(refined)
            g_adv = g_fm = d_loss = d_acc = tf.constant(0.0)
            if adversarial:
                real = _real_map(mask, fake, c, cfg.label_smoothing)
                d_real, *real_features = self.discriminator([image, real], training=True)
                d_fake = self.discriminator([image, tf.stop_gradient(fake)], training=True)[0]
                d_loss = tf.reduce_mean(tf.nn.relu(1 - d_real)) + tf.reduce_mean(tf.nn.relu(1 + d_fake))
                d_acc = 0.5 * (tf.reduce_mean(tf.cast(d_real > 0, tf.float32))
                               + tf.reduce_mean(tf.cast(d_fake < 0, tf.float32)))
                g_score, *fake_features = self.discriminator([image, fake], training=True)
                g_adv = -tf.reduce_mean(g_score)
                g_fm = tf.add_n([tf.reduce_mean(tf.abs(tf.stop_gradient(r) - f))
                                 for r, f in zip(real_features, fake_features, strict=True)])
            g_loss = supervised + cfg.adversarial_weight * g_adv + cfg.feature_matching_weight * g_fm
        g_grads = g_tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_optimizer.apply_gradients(zip(g_grads, self.generator.trainable_variables, strict=True))
        d_norm = tf.constant(0.0)
        if adversarial:
            d_grads = d_tape.gradient(d_loss, self.discriminator.trainable_variables)
            self.d_optimizer.apply_gradients(zip(d_grads, self.discriminator.trainable_variables, strict=True))
            d_norm = tf.linalg.global_norm(d_grads)
        return {"ce": ce, "g_adv": g_adv, "g_feature_matching": g_fm, "d_loss": d_loss, "d_accuracy": d_acc,
                "g_grad_norm": tf.linalg.global_norm(g_grads), "d_grad_norm": d_norm}


def _selection_score(record: dict) -> float:
    """What the kept weights are chosen by: refined mIoU plus refined Boundary F on val."""
    return record["refined_boundary_f"] + record["refined_miou"]


def _changed_image(chance: float) -> Callable[[np.ndarray], np.ndarray]:
    """The segmenter's capture changes, each with ``chance``, on a uint8 RGB image."""
    def change(image: np.ndarray) -> np.ndarray:
        changed = capture_changes(tf.constant(image, tf.float32) / 255.0, chance)
        return np.asarray(changed * 255.0 + 0.5).astype(np.uint8)
    return change


def _last_step(record: dict) -> float:
    """Under the protocol the last checkpoint is kept: choosing one on the held-out drive would flatter
    it; in a final fit val was trained on, so choosing by it would choose nothing real."""
    return record["step"]


def keeps_last_checkpoint(config: RefinerTrainConfig) -> bool:
    """Whether no checkpoint is chosen by its score: under the protocol or in a final fit."""
    return bool(config.held_out_sequence) or config.final_fit


def scored_name(config: RefinerTrainConfig) -> str:
    """What the checks score, as the log and the CLI name it."""
    if config.held_out_sequence:
        return f"held-out {config.held_out_sequence}"
    return "seen val" if config.final_fit else "val"


def _is_run(path: str) -> bool:
    return (Path(path) / "config.json").is_file()


def _left_out(segmenter: str) -> str | None:
    """The drives a segmenter training run left out (its held_out_sequence); None for a run that left
    none out, or a converted model, which says nothing of its training."""
    return load_config(Path(segmenter) / "config.json").held_out_sequence if _is_run(segmenter) else None


def _training_and_scored_pairs(config: RefinerTrainConfig) -> tuple[list[Pair], list[Pair]]:
    """What the refiner trains on and what it is scored on: train and val, or under the protocol
    train + val without the held-out drive and that drive, whose segmenter must not have seen it."""
    train, val = find_pairs(config.data, "train"), find_pairs(config.data, "val")
    drive = config.held_out_sequence
    if config.final_fit:
        if drive is not None:
            raise SegrefineError("final_fit trains on every labelled image; it cannot also leave a sequence out: "
                                 "set one of them")
        return train + val, val
    if drive is None:
        return train, val
    seen = _left_out(config.segmenter)
    if seen != drive:
        raise SegrefineError(f"under held_out_sequence={drive} the segmenter must be the run trained with "
                             f"--set held_out_sequence={drive}; {config.segmenter} "
                             + (f"left out {seen or 'no drive'}" if _is_run(config.segmenter) else "is not a training run"))
    for name in config.heldout_segmenters:       # nested folds: none may have seen the scored drive either
        left_out = _left_out(name)
        if drive not in held_out_sequences(left_out or ""):
            raise SegrefineError(f"under held_out_sequence={drive} every --heldout-segmenter must have left {drive} "
                                 f"out too; {name} left out {left_out or 'no drive'}")
    training, held_out = split_by_sequence([train, val], drive)
    return training, sorted(held_out, key=lambda pair: pair.image.name)   # in time order, for a temporal refiner


def train_refiner(config: RefinerTrainConfig, run: str | Path, resume: bool = False) -> dict:
    """Train, keeping ``best.weights.h5`` and resumable checkpoints in ``run``; the segmenter's
    outputs the refiner learns from are cached in ``run/inputs/`` (conversion calibrates on them)."""
    folder = RunFolder(run, "refiner", dataclasses.asdict(config))
    folder.open(resume)
    check_momentum(config.ema_momentum)
    keras.utils.set_random_seed(config.seed)
    c = config.model.num_classes
    predict = _frozen_segmenter(Path(config.segmenter), c)
    info = read_class_info(config.data)
    void = info.void if info and info.void is not None else 255
    pairs = dict(zip(("train", "val"), _training_and_scored_pairs(config), strict=True))
    splits = {name: decode_split(pairs[name], c, void) for name in ("train", "val")}
    pixel_weights = class_weights(splits["train"], c, config.class_weighting)
    plan = _heldout_plan(config.heldout_segmenters, splits["train"], pairs["train"]) if config.heldout_segmenters else None
    inputs = folder.path / "inputs"
    if not resume:
        folder.create()
    inputs.mkdir(exist_ok=True)
    write_atomic(inputs / TRAIN_IMAGES, "".join(f"{pairs['train'][index].image.resolve()}\n"
                                                for index in _decoded_pairs(pairs["train"], splits["train"])).encode())
    heldout = _heldout_logits(plan, splits["train"], c, config.model.logits_hw, inputs) if plan else None
    data = {name: refiner_split(split, segmenter_logits(predict, split, config.model.logits_hw,
                                                        inputs / f"{name}.npy"), config.model.input_hw)
            for name, split in splits.items()}
    data["train"].heldout_logits = heldout
    generator, discriminator = build_generator(config.model), build_discriminator(config.model)
    g_opt = keras.optimizers.Adam(config.lr_generator, beta_1=0.5, **ema_options(config.ema_momentum))
    d_opt = keras.optimizers.Adam(config.lr_discriminator, beta_1=0.5)
    g_opt.build(generator.trainable_variables)      # now, so checkpoints can restore their slots
    d_opt.build(discriminator.trainable_variables)
    gan = RefinerGAN(generator, discriminator, config, pixel_weights)
    gan.compile(g_opt, d_opt)
    scored = build_generator(config.model) if g_opt.use_ema else generator
    done = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoints = folder.checkpoints(tf.train.Checkpoint(generator=generator, discriminator=discriminator,
                                                         g_optimizer=g_opt, d_optimizer=d_opt, step=done))
    restore_latest(checkpoints, resume)
    start = int(done.numpy())
    step = tf.function(gan.train_step)
    writer = folder.tensorboard()
    # A resumed run draws fresh batches (the stream is seeded by the step it resumes from)
    stream = batches(data["train"], config.batch, c, config.real_share, config.seed + start, config.model.temporal,
                     config.flow_residual, config.heldout_share,
                     _changed_image(config.capture) if config.capture > 0 else None)
    truth = splits["val"].masks
    started = time.monotonic()
    for i in range(start + 1, config.steps + 1):
        *features, mask = (tf.constant(a) for a in next(stream))
        logs = {k: float(v) for k, v in step((tuple(features), mask)).items()}
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
            folder.append_history(record)
            log.info("step %d ce %.4f d_acc %.2f | %s mIoU %.4f -> %.4f, BF %.4f -> %.4f", i, logs["ce"],
                     logs["d_accuracy"], scored_name(config),
                     scores["segmenter_miou"], scores["refined_miou"],
                     scores["segmenter_boundary_f"], scores["refined_boundary_f"])
            folder.keep_if_best(record, _last_step if keeps_last_checkpoint(config) else _selection_score,
                                scored.save_weights)
            done.assign(i)
            checkpoints.save()
    return folder.best_record() or {}
