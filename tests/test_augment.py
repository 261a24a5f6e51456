"""Training augmentation: the capture changes (light, white balance, blur, noise, JPEG) keep the
image valid and leave the labels alone; with the chance at 0 the shipped recipe is untouched."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.train

from segrefine_edge.training.data import AugmentConfig, _augment, _capture, _motion_blur  # noqa: E402


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = np.full((48, 64, 3), 90, np.uint8)
    image[:, 32:] = 200
    image = (image + rng.integers(0, 20, image.shape)).astype(np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[:, 32:] = 3
    return image, mask


def test_capture_changes_the_image_and_stays_in_range():
    image = tf.constant(_scene()[0], tf.float32) / 255.0
    tf.random.set_seed(1)
    changed = _capture(image, 1.0).numpy()
    assert changed.shape == image.shape and changed.min() >= 0 and changed.max() <= 1
    assert np.abs(changed - image.numpy()).mean() > 0.01
    assert np.array_equal(_capture(image, 0.0).numpy(), image.numpy())


def test_motion_blur_keeps_a_flat_image_flat_and_softens_an_edge():
    flat = tf.fill([32, 32, 3], 0.5)
    np.testing.assert_allclose(_motion_blur(flat).numpy(), 0.5, atol=1e-6)   # edge padding adds no border
    edge = np.zeros((32, 32, 3), np.float32)
    edge[:, 16:] = 1.0
    tf.random.set_seed(3)
    blurred = np.stack([_motion_blur(tf.constant(edge)).numpy() for _ in range(8)])
    assert ((blurred > 0.01) & (blurred < 0.99)).any()      # some streak crossed the edge
    np.testing.assert_allclose(blurred.mean(axis=(1, 2, 3)), edge.mean(), atol=0.02)   # light is kept


def test_capture_never_moves_the_labels():
    image, mask = _scene()
    config = AugmentConfig(crop_hw=(48, 64), scale_range=(1.0, 1.0), flip=False, capture=1.0)
    out_image, out_mask = _augment(tf.constant(image), tf.constant(mask), config, 11)
    assert np.array_equal(out_mask.numpy(), mask.astype(np.int32))
    assert out_image.dtype == tf.float32 and 0 <= float(tf.reduce_min(out_image)) <= float(tf.reduce_max(out_image)) <= 255
