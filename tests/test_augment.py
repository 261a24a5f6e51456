"""Training augmentation: the capture changes (light, white balance, blur, noise, JPEG) keep the
image valid and leave the labels alone; with the chance at 0 the shipped recipe is untouched.
Class-balanced crops centre on the rare classes and keep image and mask aligned."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.train

from segrefine_edge.training.data import (  # noqa: E402
    AugmentConfig,
    DecodedSplit,
    _augment,
    _crop,
    _motion_blur,
    capture_changes,
    rare_classes,
)


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = np.full((48, 64, 3), 90, np.uint8)
    image[:, 32:] = 200
    image = (image + rng.integers(0, 20, image.shape)).astype(np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[:, 32:] = 3
    return image, mask


def testcapture_changes_changes_the_image_and_stays_in_range():
    image = tf.constant(_scene()[0], tf.float32) / 255.0
    tf.random.set_seed(1)
    changed = capture_changes(image, 1.0).numpy()
    assert changed.shape == image.shape and changed.min() >= 0 and changed.max() <= 1
    assert np.abs(changed - image.numpy()).mean() > 0.01
    assert np.array_equal(capture_changes(image, 0.0).numpy(), image.numpy())


def test_motion_blur_keeps_a_flat_image_flat_and_softens_an_edge():
    flat = tf.fill([32, 32, 3], 0.5)
    np.testing.assert_allclose(_motion_blur(flat).numpy(), 0.5, atol=1e-6)   # edge padding adds no border
    edge = np.zeros((32, 32, 3), np.float32)
    edge[:, 16:] = 1.0
    tf.random.set_seed(3)
    blurred = np.stack([_motion_blur(tf.constant(edge)).numpy() for _ in range(8)])
    assert ((blurred > 0.01) & (blurred < 0.99)).any()      # some streak crossed the edge
    np.testing.assert_allclose(blurred.mean(axis=(1, 2, 3)), edge.mean(), atol=0.02)   # light is kept


def testcapture_changes_never_moves_the_labels():
    image, mask = _scene()
    config = AugmentConfig(crop_hw=(48, 64), scale_range=(1.0, 1.0), flip=False, capture=1.0)
    out_image, out_mask = _augment(tf.constant(image), tf.constant(mask), config, 11, tf.zeros([0], tf.int32))
    assert np.array_equal(out_mask.numpy(), mask.astype(np.int32))
    assert out_image.dtype == tf.float32 and 0 <= float(tf.reduce_min(out_image)) <= float(tf.reduce_max(out_image)) <= 255


def _thin_pole_scene() -> tuple[np.ndarray, np.ndarray]:
    """A 120x160 frame of road (class 3) with a 2-pixel pole (class 2) near its right edge,
    image value = label * 20 so a crop's image shows where it came from."""
    mask = np.full((120, 160), 3, np.uint8)
    mask[20:100, 150:152] = 2
    mask[:4] = 255                                     # void is never a class to centre on
    return np.repeat((mask.astype(np.int32) * 20 % 256).astype(np.float32)[..., None], 3, axis=-1), mask


def test_rare_classes_are_those_below_the_median_pixel_count():
    masks = [np.array([[0] * 50 + [1] * 30 + [2] * 15 + [3] * 5], np.uint8)]
    assert rare_classes(DecodedSplit([np.zeros((1, 100, 3), np.uint8)], masks, []), 5).tolist() == [2, 3]


def test_balanced_crops_centre_on_a_rare_class_and_random_crops_rarely_find_it():
    image, mask = _thin_pole_scene()
    both = tf.constant(np.concatenate([image, mask[..., None].astype(np.float32)], axis=-1))
    tf.random.set_seed(0)
    balanced = [_crop(both, (32, 32), tf.constant([2]), 1.0).numpy() for _ in range(20)]
    random = [_crop(both, (32, 32), tf.constant([2]), 0.0).numpy() for _ in range(200)]
    assert all((c[..., 3] == 2).any() for c in balanced)
    assert all(c.shape == (32, 32, 4) and np.array_equal(c[..., 0], c[..., 3] * 20 % 256) for c in balanced)
    assert np.mean([(c[..., 3] == 2).any() for c in random]) < 0.4
    no_rare = tf.constant(np.concatenate([image, np.full((120, 160, 1), 3, np.float32)], axis=-1))
    assert _crop(no_rare, (32, 32), tf.constant([2]), 1.0).shape == (32, 32, 4)   # falls back to random
