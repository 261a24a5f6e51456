"""tf.data pipelines for segmentation: parallel decode into memory, in-graph augmentation.

Pairs come from :func:`segrefine_edge.datasets.find_pairs`, so training reads exactly the
layouts `eval` reads. Decoding happens once, in a thread pool, with OpenCV; the decoded
split is the cache. Unreadable images are skipped and counted, never fatal; a mask with a
value that is neither a class nor void is fatal, because it means the class list is wrong.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import tensorflow as tf

from segrefine_edge.datasets import Pair
from segrefine_edge.errors import DatasetError, SegrefineError
from segrefine_edge.pngio import read_labels

log = logging.getLogger(__name__)


@dataclass
class DecodedSplit:
    """A split held in memory as RGB uint8 images and uint8 label masks."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    skipped: list[str]


def _decode(pair: Pair) -> tuple[np.ndarray, np.ndarray] | None:
    """The RGB image and its class indices, read as `eval` reads them (a palette PNG gives its
    indices, not its colours), or None when either file cannot be read."""
    image = cv2.imread(str(pair.image), cv2.IMREAD_COLOR)
    try:
        mask = read_labels(pair.mask)
    except DatasetError as exc:
        if exc.__cause__ is None:   # readable but wrong (a colour mask): fatal, not skipped
            raise
        return None
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), mask


def decode_split(pairs: list[Pair], num_classes: int, void: int, workers: int = 4) -> DecodedSplit:
    """Decode every pair; skip (and list) unreadable ones; reject masks with unknown values."""
    with ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(_decode, pairs))
    images, masks, skipped = [], [], []
    for pair, item in zip(pairs, decoded, strict=True):
        if item is None:
            skipped.append(str(pair.image))
            continue
        image, mask = item
        if image.shape[:2] != mask.shape[:2]:
            raise DatasetError(f"{pair.image} is {image.shape[1]}x{image.shape[0]} but its mask is "
                               f"{mask.shape[1]}x{mask.shape[0]}; image and mask must have the same size")
        bad = (mask >= num_classes) & (mask != void)
        if bad.any():
            raise DatasetError(f"mask {pair.mask} holds value {int(mask[bad].max())}, outside classes "
                               f"0-{num_classes - 1} and void {void}; fix the mask or the class list")
        images.append(image)
        masks.append(mask.astype(np.uint8))
    if skipped:
        log.warning("skipped %d unreadable image(s), e.g. %s", len(skipped), skipped[0])
    if not images:
        raise DatasetError("no readable image/mask pair in the split")
    return DecodedSplit(images, masks, skipped)


@dataclass
class AugmentConfig:
    """In-graph augmentation for training crops."""

    # The whole 352x480 frame: it beat 288x384 crops over two runs each, for about twice the time
    # per epoch (docs/experiments.md).
    crop_hw: tuple[int, int] = (352, 480)
    scale_range: tuple[float, float] = (0.85, 1.5)   # below 1 the frame leaves void (ignored) around it
    flip: bool = True
    brightness: float = 0.12
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.03
    # What differs between drives rather than within one (issue 22): the chance that each of
    # exposure and gamma (dusk, low light), white balance, motion blur, sensor noise and JPEG
    # is applied to a crop. 0 is the shipped recipe.
    capture: float = 0.0
    # The chance that a crop is centred on a pixel of a rare class (rarer than the median class
    # in the training masks: Pole, SignSymbol, Fence, Pedestrian, Bicyclist on CamVid), the class
    # drawn uniformly among those in the frame, instead of placed at random; as the class-uniform
    # sampling of Zhu et al. (2019). It only acts where the scaled frame is larger than the crop.
    # 0 is the shipped recipe.
    balanced_crops: float = 0.0


BLUR_TAPS = 9   # the longest motion streak, in pixels of the training crop


def _motion_blur(image: tf.Tensor) -> tf.Tensor:
    """A straight streak of random length (1 to BLUR_TAPS pixels) and angle, edge-padded."""
    half = BLUR_TAPS // 2
    length = tf.random.uniform([], 1.0, float(BLUR_TAPS))
    angle = tf.random.uniform([], 0.0, np.pi)
    y, x = tf.meshgrid(tf.range(-half, half + 1, dtype=tf.float32), tf.range(-half, half + 1, dtype=tf.float32),
                       indexing="ij")
    along = tf.cos(angle) * x + tf.sin(angle) * y
    across = -tf.sin(angle) * x + tf.cos(angle) * y
    kernel = tf.cast((tf.abs(across) < 0.5) & (tf.abs(along) <= length / 2), tf.float32)
    kernel = kernel / tf.reduce_sum(kernel)
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    padded = tf.pad(image[None], [[0, 0], [half, half], [half, half], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")[0]


def _maybe(chance: float, change, image: tf.Tensor) -> tf.Tensor:
    return tf.cond(tf.random.uniform([]) < chance, lambda: change(image), lambda: image)


def capture_changes(image: tf.Tensor, chance: float) -> tf.Tensor:
    """Camera and light differences on an RGB image in [0, 1], each with probability ``chance``."""
    def exposure(x):     # from one and a half stops under (dusk) to half a stop over, then a gamma
        gain = tf.pow(2.0, tf.random.uniform([], -1.5, 0.5))
        return tf.pow(tf.clip_by_value(x * gain, 0.0, 1.0), tf.random.uniform([], 0.75, 1.35))

    def white_balance(x):   # warm to cool light: red and blue gains against green
        gains = tf.stack([tf.random.uniform([], 0.8, 1.2), 1.0, tf.random.uniform([], 0.8, 1.2)])
        return tf.clip_by_value(x * gains, 0.0, 1.0)

    def noise(x):   # shot-like noise: stronger in the dark, as a small sensor's is
        sigma = tf.random.uniform([], 0.005, 0.04)
        return tf.clip_by_value(x + tf.random.normal(tf.shape(x)) * sigma * tf.sqrt(x + 0.02), 0.0, 1.0)

    def jpeg(x):
        return tf.image.random_jpeg_quality(x, 30, 95)

    for change in (exposure, white_balance, _motion_blur, noise, jpeg):
        image = _maybe(chance, change, image)
    return image


def _crop(both: tf.Tensor, crop_hw: tuple[int, int], rare: tf.Tensor, chance: float) -> tf.Tensor:
    """A crop of ``both`` (image channels, then the mask): at random, or with probability ``chance``
    centred (as far as the frame allows) on a random pixel of a ``rare`` class the frame holds."""
    ch, cw = crop_hw
    mask = tf.cast(both[..., -1], tf.int32)

    def around_rare():
        present = tf.boolean_mask(rare, tf.reduce_any(mask[None] == rare[:, None, None], axis=[1, 2]))
        if_none = tf.image.random_crop(both, [ch, cw, tf.shape(both)[-1]])

        def centred():
            cls = tf.random.shuffle(present)[0]
            where = tf.where(mask == cls)
            y, x = tf.unstack(tf.cast(tf.random.shuffle(where)[0], tf.int32))
            top = tf.clip_by_value(y - ch // 2, 0, tf.shape(mask)[0] - ch)
            left = tf.clip_by_value(x - cw // 2, 0, tf.shape(mask)[1] - cw)
            return both[top:top + ch, left:left + cw]
        return tf.cond(tf.size(present) > 0, centred, lambda: if_none)

    if chance <= 0:
        return tf.image.random_crop(both, [ch, cw, tf.shape(both)[-1]])
    return tf.cond(tf.random.uniform([]) < chance, around_rare,
                   lambda: tf.image.random_crop(both, [ch, cw, tf.shape(both)[-1]]))


def rare_classes(split: DecodedSplit, num_classes: int) -> np.ndarray:
    """The classes rarer than the median class by pixel count in ``split``'s masks."""
    counts = class_pixel_counts(split, num_classes)
    seen = counts > 0
    return np.flatnonzero(seen & (counts < np.median(counts[seen]))).astype(np.int32)


def _augment(image: tf.Tensor, mask: tf.Tensor, cfg: AugmentConfig, void: int, rare: tf.Tensor):
    """Random scale, pad with void, crop, flip and colour jitter; image stays float RGB 0-255."""
    ch, cw = cfg.crop_hw
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.random.uniform([], *cfg.scale_range)
    new_hw = tf.cast(tf.round(hw * scale), tf.int32)
    image = tf.image.resize(tf.cast(image, tf.float32), new_hw, method="bilinear")
    mask = tf.image.resize(mask[..., None], new_hw, method="nearest")
    pad_h, pad_w = tf.maximum(ch - new_hw[0], 0), tf.maximum(cw - new_hw[1], 0)
    paddings = [[0, pad_h], [0, pad_w], [0, 0]]
    image = tf.pad(image, paddings, constant_values=127.5)
    mask = tf.pad(tf.cast(mask, tf.float32), paddings, constant_values=float(void))
    both = _crop(tf.concat([image, mask], axis=-1), (ch, cw), rare, cfg.balanced_crops)
    if cfg.flip:
        both = tf.image.random_flip_left_right(both)
    image, mask = both[..., :3] / 255.0, both[..., 3]
    image = tf.image.random_brightness(image, cfg.brightness)
    image = tf.image.random_contrast(image, 1 - cfg.contrast, 1 + cfg.contrast)
    image = tf.image.random_saturation(image, 1 - cfg.saturation, 1 + cfg.saturation)
    image = tf.image.random_hue(image, cfg.hue)
    image = tf.clip_by_value(image, 0.0, 1.0)
    if cfg.capture > 0:
        image = capture_changes(image, cfg.capture)
    image = image * 255.0
    return image, tf.cast(mask, tf.int32)


def _generator(split: DecodedSplit):
    def gen():
        yield from zip(split.images, split.masks, strict=True)

    return gen


def training_dataset(split: DecodedSplit, cfg: AugmentConfig, batch: int, void: int, seed: int,
                     num_classes: int) -> tf.data.Dataset:
    """Endless shuffled, augmented batches of (image float [0,255], mask int32 with void)."""
    tf.random.set_seed(seed)
    rare = tf.constant(rare_classes(split, num_classes) if cfg.balanced_crops > 0 else np.zeros(0, np.int32))
    ds = tf.data.Dataset.from_generator(
        _generator(split),
        output_signature=(
            tf.TensorSpec([None, None, 3], tf.uint8),
            tf.TensorSpec([None, None], tf.uint8),
        ),
    )
    ds = ds.shuffle(len(split.images), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda i, m: _augment(i, m, cfg, void, rare), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


CLASS_WEIGHTINGS = ("none", "median", "sqrt_median")


def class_pixel_counts(split: DecodedSplit, num_classes: int) -> np.ndarray:
    """Labelled pixels per class over the split's masks (void and other labels not counted)."""
    counts = np.zeros(num_classes, np.float64)
    for mask in split.masks:
        counts += np.bincount(mask.reshape(-1), minlength=256)[:num_classes]
    return counts


def class_weights(split: DecodedSplit, num_classes: int, mode: str) -> np.ndarray | None:
    """Median-frequency class weights (Eigen & Fergus), or their square root, or None.

    The square root keeps the rare classes (Pole, SignSymbol, Pedestrian, Bicyclist) boosted
    without letting them dominate the common ones.
    """
    if mode not in CLASS_WEIGHTINGS:
        raise SegrefineError(f"class weighting '{mode}' is not one of {', '.join(CLASS_WEIGHTINGS)}; "
                             "set class_weighting=none, median or sqrt_median")
    if mode == "none":
        return None
    counts = class_pixel_counts(split, num_classes)
    freq = counts / max(counts.sum(), 1)
    weights = np.median(freq[freq > 0]) / np.maximum(freq, 1e-12)
    weights[freq == 0] = 0.0
    if mode == "sqrt_median":
        weights = np.sqrt(weights)
    return weights.astype(np.float32)
