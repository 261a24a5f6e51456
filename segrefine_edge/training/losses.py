"""Segmentation losses that ignore void pixels."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def masked_cross_entropy(labels: tf.Tensor, logits: tf.Tensor, num_classes: int,
                         class_weights: np.ndarray | tf.Tensor | None = None,
                         pixel_weights: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-pixel cross-entropy on logits and each pixel's weight, for both trainers to reduce.

    Labels outside [0, num_classes) (void) weigh 0; ``class_weights`` scales each pixel by its
    class's weight, ``pixel_weights`` (same shape as the labels) by its own. Returns
    ``(ce * weight, weight)``.
    """
    labels = tf.cast(tf.reshape(labels, tf.shape(logits)[:-1]), tf.int32)
    valid = (labels >= 0) & (labels < num_classes)
    safe = tf.where(valid, labels, 0)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, tf.cast(logits, tf.float32))
    weight = tf.cast(valid, tf.float32)
    if class_weights is not None:
        weight *= tf.gather(tf.cast(class_weights, tf.float32), safe)
    if pixel_weights is not None:
        weight *= pixel_weights
    return ce * weight, weight


def segmentation_loss(num_classes: int, class_weights: np.ndarray | None = None, ohem_fraction: float = 0.0,
                      lovasz_weight: float = 0.0):
    """Pixel cross-entropy on logits; labels outside [0, num_classes) (void) never count.

    ``ohem_fraction`` in (0, 1] keeps only the hardest share of valid pixels in the batch
    (online hard example mining), which helps thin classes that a mean loss drowns;
    ``lovasz_weight`` adds that much Lovasz-softmax, which weighs every class alike.
    """
    weights = None if class_weights is None else tf.constant(class_weights, tf.float32)

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        labels = tf.cast(tf.reshape(y_true, tf.shape(y_pred)[:-1]), tf.int32)
        ce, w = masked_cross_entropy(labels, y_pred, num_classes, weights)
        ce, w = tf.reshape(ce, [-1]), tf.reshape(w, [-1])
        if ohem_fraction > 0:
            valid = (labels >= 0) & (labels < num_classes)
            k = tf.maximum(tf.cast(tf.reduce_sum(tf.cast(valid, tf.float32)) * ohem_fraction, tf.int32), 1)
            hardest, idx = tf.math.top_k(ce, k)
            mean = tf.reduce_sum(hardest) / tf.maximum(tf.reduce_sum(tf.gather(w, idx)), 1e-6)
        else:
            mean = tf.reduce_sum(ce) / tf.maximum(tf.reduce_sum(w), 1e-6)
        if lovasz_weight:
            mean += lovasz_weight * lovasz_softmax(y_pred, labels, num_classes)
        return mean

    return loss


def boundary_weighted_loss(labels: tf.Tensor, logits: tf.Tensor, num_classes: int, boundary_weight: float,
                           class_weights: np.ndarray | None = None) -> tf.Tensor:
    """The refiner's cross-entropy: pixels within 2 px of a ground-truth boundary weigh
    ``1 + boundary_weight``, the rest 1 (void 0), where a refiner's work is."""
    safe = tf.where(labels < num_classes, labels, 0)
    m = tf.cast(safe, tf.float32)[..., None]
    near_edge = tf.nn.max_pool2d(m, 5, 1, "SAME") != -tf.nn.max_pool2d(-m, 5, 1, "SAME")
    ce, weight = masked_cross_entropy(labels, logits, num_classes, class_weights,
                                      1.0 + boundary_weight * tf.cast(near_edge[..., 0], tf.float32))
    return tf.reduce_sum(ce) / tf.maximum(tf.reduce_sum(weight), 1.0)


def lovasz_softmax(logits: tf.Tensor, labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Berman et al.'s Lovasz-softmax loss over a batch: the convex surrogate of 1 - IoU for
    each class present in ``labels``, averaged over those classes; void (labels outside
    [0, num_classes)) is left out.

    Cross-entropy weighs every pixel alike, so a class with few pixels (a pole) counts for
    little; mean IoU and mean Boundary F weigh every class alike, and this loss does too.
    On hard (one-hot) probabilities it equals the mean of 1 - IoU exactly.
    """
    labels = tf.reshape(labels, [-1])
    valid = (labels >= 0) & (labels < num_classes)
    probabilities = tf.boolean_mask(tf.reshape(tf.nn.softmax(tf.cast(logits, tf.float32)), [-1, num_classes]), valid)
    labels = tf.boolean_mask(labels, valid)
    losses, present = [], []
    for c in range(num_classes):
        truth = tf.cast(tf.equal(labels, c), tf.float32)
        errors = tf.abs(truth - probabilities[:, c])
        errors_sorted, order = tf.math.top_k(errors, k=tf.shape(errors)[0])
        truth_sorted = tf.gather(truth, order)
        total = tf.reduce_sum(truth_sorted)
        intersection = total - tf.cumsum(truth_sorted)
        union = total + tf.cumsum(1.0 - truth_sorted)
        jaccard = 1.0 - intersection / tf.maximum(union, 1e-6)
        gradient = tf.concat([jaccard[:1], jaccard[1:] - jaccard[:-1]], 0)
        losses.append(tf.tensordot(errors_sorted, tf.stop_gradient(gradient), 1))
        present.append(total > 0)
    mask = tf.cast(tf.stack(present), tf.float32)
    return tf.reduce_sum(tf.stack(losses) * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
