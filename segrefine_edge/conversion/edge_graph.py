"""Rewrite a trained segmenter into an equivalent graph that converts to EdgeTPU-mappable ops.

Two things in the training graph lower badly:
- a dilated DepthwiseConv2D: TensorFlow builds it as SpaceToBatch -> depthwise -> BatchToSpace,
  and the converter does not always fold that back (SPACE_TO_BATCH_ND is not an EdgeTPU op);
  calling the native depthwise kernel with ``dilations`` gives one dilated DEPTHWISE_CONV_2D;
- the image-pooling broadcast (UpSampling2D from 1x1, nearest) lowers to SHAPE/TILE ops;
  a nearest-neighbour resize does the same broadcast as one RESIZE_NEAREST_NEIGHBOR.
Weights are copied unchanged, so the rewritten model computes the same function.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable("segrefine_edge")
class NativeDilatedDepthwiseConv2D(layers.DepthwiseConv2D):
    """DepthwiseConv2D lowered through ``DepthwiseConv2dNative`` with its ``dilations`` attribute.

    For export only: TensorFlow's CPU kernel for that op does not run dilations above 1, so
    the float reference stays the original layer; TFLite runs the converted op natively.
    """

    def call(self, inputs):
        stride = self.strides[0]
        rate = self.dilation_rate[0]
        outputs = tf.raw_ops.DepthwiseConv2dNative(
            input=inputs, filter=self.kernel, strides=[1, stride, stride, 1], padding=self.padding.upper(),
            dilations=[1, rate, rate, 1])
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable("segrefine_edge")
class ArgMaxLabels(layers.Layer):
    """Class index per pixel as one ARG_MAX op (keras.ops.argmax adds bitwise ops TFLite lacks)."""

    def call(self, inputs):
        return tf.argmax(inputs, axis=-1, output_type=tf.int32)


def _swap(layer: keras.layers.Layer) -> keras.layers.Layer:
    if isinstance(layer, keras.Model):
        return edge_friendly(layer)
    config = layer.get_config()
    if isinstance(layer, layers.DepthwiseConv2D) and max(layer.dilation_rate) > 1:
        if layer.dilation_rate[0] != layer.dilation_rate[1]:
            raise ValueError(f"layer {layer.name}: the EdgeTPU needs the same dilation in x and y")
        return NativeDilatedDepthwiseConv2D.from_config(config)
    if isinstance(layer, layers.UpSampling2D) and layer.interpolation == "nearest":
        _, h, w, _ = layer.output.shape
        return layers.Resizing(h, w, interpolation="nearest", name=layer.name)
    return layer.__class__.from_config(config)


def edge_friendly(model: keras.Model) -> keras.Model:
    """A copy of ``model`` built from EdgeTPU-mappable ops, with the same weights."""
    clone = keras.models.clone_model(model, clone_function=_swap)
    clone.set_weights(model.get_weights())
    return clone
