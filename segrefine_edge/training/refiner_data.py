"""Training inputs for the refiner: the frozen segmenter's real outputs, and ground truth
perturbed the way CascadePSP does, so the refiner learns to repair DeepLab's actual errors
and also sees a wider range of wrong boundaries than one segmenter makes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segrefine_edge.preprocess import resize_image
from segrefine_edge.training.data import DecodedSplit

# Size (see random_motion) of the motion a temporal refiner's previous mask keeps after flow
# alignment, in training (the shipped refiner's; 0.2 was tried, docs/experiments.md).
FLOW_RESIDUAL = 0.1
# Beside a refiner run's cached logits of its training images (inputs/train.npy): those images'
# paths, one per line, in the cache's order. Conversion calibrates on them; a run that trains on
# more than the train split (final_fit, held_out_sequence) could not be matched to its cache otherwise.
TRAIN_IMAGES = "train_images.txt"


@dataclass
class RefinerSplit:
    """Images and masks at the refiner's input size, the segmenter's logits at the size of the
    refiner's logits input (the same, or smaller by its ``logits_stride``)."""

    images: np.ndarray      # N x H x W x 3 uint8 RGB
    masks: np.ndarray       # N x H x W uint8 (void kept)
    logits: np.ndarray      # N x h x w x C float16, the segmenter's
    heldout_logits: np.ndarray | None = None    # the same from segmenters that never saw the image


def segmenter_logits(predict: Callable[[np.ndarray], np.ndarray], split: DecodedSplit, out_hw: tuple[int, int],
                     cache: Path) -> np.ndarray:
    """The segmenter's logits (``predict`` maps an RGB image to HxWxC logits at any size) for
    every image, resized to ``out_hw``; cached in ``cache``, which conversion calibrates from."""
    if cache.is_file():
        return np.load(cache)
    outputs = [cv2.resize(predict(image), out_hw[::-1], interpolation=cv2.INTER_LINEAR).astype(np.float16)
               for image in split.images]
    stacked = np.stack(outputs)
    np.save(cache, stacked)
    return stacked


def refiner_split(split: DecodedSplit, logits: np.ndarray, hw: tuple[int, int]) -> RefinerSplit:
    size = hw[::-1]
    images = np.stack([resize_image(i, hw) for i in split.images])
    masks = np.stack([cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) for m in split.masks])
    return RefinerSplit(images, masks, logits)


def perturbed_logits(mask: np.ndarray, num_classes: int, rng: np.random.Generator,
                     out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Logits of a damaged copy of ``mask``: classes dilated or eroded by a few pixels, the
    whole map blurred at a coarse scale (DeepLab's over-smoothing) and its contours jittered;
    at ``out_hw`` (default: the mask's size)."""
    labels = mask.copy()
    labels[labels >= num_classes] = 0
    for cls in rng.choice(num_classes, size=3, replace=False):
        region = (labels == cls).astype(np.uint8)
        if not region.any():
            continue
        k = int(rng.integers(2, 7)) * 2 + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        grown = cv2.dilate(region, kernel) if rng.random() < 0.5 else cv2.erode(region, kernel)
        if grown.sum() < region.sum():
            labels[(region > 0) & (grown == 0)] = _neighbour_class(labels, region, kernel)
        else:
            labels[grown > 0] = cls
    h, w = labels.shape
    flow = cv2.resize(rng.normal(0, 2.5, (h // 16 + 1, w // 16 + 1, 2)).astype(np.float32), (w, h))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    labels = cv2.remap(labels, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    factor = int(rng.choice([4, 8]))
    coarse = cv2.resize(onehot, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    oh, ow = out_hw or (h, w)
    probs = cv2.resize(coarse, (ow, oh), interpolation=cv2.INTER_LINEAR).reshape(oh, ow, num_classes)
    return (np.log(np.clip(probs, 1e-3, 1.0)) * float(rng.uniform(1.0, 3.0))).astype(np.float16)


def _neighbour_class(labels: np.ndarray, region: np.ndarray, kernel: np.ndarray) -> int:
    """The most common other class around ``region``: what an eroded region gives way to."""
    ring = (cv2.dilate(region, kernel) > 0) & (region == 0)
    around = labels[ring]
    return int(np.bincount(around).argmax()) if around.size else 0


def probabilities_at(logits: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Softmax of ``logits`` resized to ``hw``: what the runtime feeds a temporal refiner's
    previous input on a first frame."""
    z = logits.astype(np.float32)
    if z.shape[:2] != tuple(hw):
        z = cv2.resize(z, hw[::-1], interpolation=cv2.INTER_LINEAR).reshape(*hw, z.shape[-1])
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def random_motion(h: int, w: int, rng: np.random.Generator, size: float = 1.0) -> np.ndarray:
    """A 2x3 affine: at ``size`` 1, the camera motion between two of CamVid's labelled frames
    (a second apart): shift up to 12% of the width, zoom 0.9-1.12, roll up to 3 degrees.
    Smaller sizes stand for what is left after the runtime's optical-flow alignment."""
    angle = float(rng.uniform(-3.0, 3.0)) * size
    zoom = 1.0 + float(rng.uniform(-0.1, 0.12)) * size
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
    matrix[:, 2] += rng.uniform(-0.12, 0.12, 2) * w * size
    return matrix


def previous_probabilities(data: RefinerSplit, index: int, current: np.ndarray, num_classes: int,
                           rng: np.random.Generator, flow_residual: float) -> np.ndarray:
    """What a temporal refiner sees as the previous frame's refined probabilities, already
    pulled along the optical flow by the runtime.

    Mostly a plausible refined map of this image (smoothed ground truth, a perturbed one, or
    the segmenter's own) left slightly out of place, as flow alignment leaves it; sometimes
    badly out of place (the flow failed), a first frame (the current input's probabilities,
    which is what the runtime feeds when it has no previous frame) or a scene cut (another
    image's map), so the refiner learns when not to trust it. ``flow_residual`` is the size
    (see ``random_motion``) of what flow alignment leaves: the smaller, the more the refiner
    learns to trust an aligned previous mask.
    """
    mask = data.masks[index]
    hw = mask.shape
    draw = rng.random()
    if draw < 0.15:
        return probabilities_at(current, hw)
    if draw < 0.25:
        return probabilities_at(data.logits[int(rng.integers(len(data.logits)))], hw)
    source = rng.random()
    if source < 0.2:
        valid = mask < num_classes
        onehot = np.eye(num_classes, dtype=np.float32)[np.where(valid, mask, 0)] * 0.9 + 0.1 / num_classes
        probs = np.where(valid[..., None], onehot, probabilities_at(data.logits[index], hw))
    elif source < 0.6:
        probs = probabilities_at(perturbed_logits(mask, num_classes, rng), hw)
    else:
        probs = probabilities_at(data.logits[index], hw)
    h, w = hw
    motion = random_motion(h, w, rng, size=1.0 if draw < 0.4 else flow_residual)
    moved = cv2.warpAffine(probs, motion, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return moved.reshape(h, w, num_classes)


def batches(data: RefinerSplit, batch: int, num_classes: int, real_share: float, seed: int,
            temporal: bool = False, flow_residual: float = FLOW_RESIDUAL, heldout_share: float = 0.0,
            change_image: Callable[[np.ndarray], np.ndarray] | None = None):
    """Endless batches of the generator's inputs and the mask: (image, input logits[, previous
    probabilities], mask). Input logits are a real segmenter's with probability ``real_share``
    (of those, ``heldout_share`` from a held-out fold's segmenter where the split has them),
    perturbed ground truth otherwise; random horizontal flips. ``change_image``, where given,
    alters the refiner's copy of each image (light, colour, noise) and never the labels."""
    rng = np.random.default_rng(seed)
    n = len(data.images)
    while True:
        idx = rng.integers(0, n, batch)
        columns: list[list[np.ndarray]] = [[], [], [], []] if temporal else [[], [], []]
        for i in idx:
            image, mask = data.images[i], data.masks[i]
            if change_image is not None:
                image = change_image(image)
            if rng.random() >= real_share:
                inputs = perturbed_logits(mask, num_classes, rng, data.logits.shape[1:3])
            elif data.heldout_logits is not None and rng.random() < heldout_share:
                inputs = data.heldout_logits[i]
            else:
                inputs = data.logits[i]
            sample = [image, inputs]
            if temporal:
                sample.append(previous_probabilities(data, int(i), inputs, num_classes, rng, flow_residual))
            sample.append(mask)
            if rng.random() < 0.5:
                sample = [a[:, ::-1] for a in sample]
            for column, array in zip(columns, sample, strict=True):
                column.append(array)
        *features, masks = columns
        yield (*(np.stack(f).astype(np.float32) for f in features), np.stack(masks).astype(np.int32))
