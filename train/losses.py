"""Segmentation losses that ignore void pixels."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def segmentation_loss(num_classes: int, class_weights: np.ndarray | None = None, ohem_fraction: float = 0.0):
    """Pixel cross-entropy on logits; labels outside [0, num_classes) (void) never count.

    ``ohem_fraction`` in (0, 1] keeps only the hardest share of valid pixels in the batch
    (online hard example mining), which helps thin classes that a mean loss drowns.
    """
    weights = None if class_weights is None else tf.constant(class_weights, tf.float32)

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        labels = tf.cast(tf.reshape(y_true, tf.shape(y_pred)[:-1]), tf.int32)
        valid = (labels >= 0) & (labels < num_classes)
        safe = tf.where(valid, labels, 0)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, tf.cast(y_pred, tf.float32))
        w = tf.cast(valid, tf.float32)
        if weights is not None:
            w = w * tf.gather(weights, safe)
        ce, w = tf.reshape(ce * w, [-1]), tf.reshape(w, [-1])
        if ohem_fraction > 0:
            k = tf.maximum(tf.cast(tf.reduce_sum(tf.cast(valid, tf.float32)) * ohem_fraction, tf.int32), 1)
            hardest, idx = tf.math.top_k(ce, k)
            return tf.reduce_sum(hardest) / tf.maximum(tf.reduce_sum(tf.gather(w, idx)), 1e-6)
        return tf.reduce_sum(ce) / tf.maximum(tf.reduce_sum(w), 1e-6)

    return loss
