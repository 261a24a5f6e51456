"""The refiner generator and the conditional PatchGAN discriminator.

The generator sees the frame and the segmenter's logits (upsampled to the refiner's size)
and predicts a residual added to those logits: with its last layer zero-initialised it starts
as the identity, so training only has to learn where DeepLab's boundaries are wrong. No
BatchNorm anywhere (the segmenter's image-pooling branch showed how small-batch statistics
break at inference); every op converts to int8 and maps to the EdgeTPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from segrefine_edge.errors import SegrefineError

_HEADS = {
    "pointwise": lambda x, width: layers.Conv2D(16, 1, name="d0")(x),
    "conv3x3": lambda x, width: layers.Conv2D(width, 3, padding="same", name="d0")(x),
}


@dataclass
class RefinerConfig:
    num_classes: int = 11
    input_hw: tuple[int, int] = (176, 240)
    width: int = 32
    discriminator_width: int = 64
    # Video mode: a third input, the previous frame's refined class probabilities, lets the
    # refiner keep what did not move instead of re-deciding every boundary each frame.
    temporal: bool = False
    # The stem sees softmax(logits) when true (the first refiners did), else logits / 8. An int8
    # softmax over the full 176x240x11 input cost 1.5 ms, a third of the refiner's invoke, for
    # a normalisation the first convolution can learn.
    softmax_stem: bool = False
    # The logits input's size is input_hw / logits_stride and the graph upsamples it. At 2 the
    # segmenter's 88x120 output goes in as it is: no full-size logits tensor for the runtime to
    # resize and quantise (the invoke itself takes as long: the resize moves into the graph).
    logits_stride: int = 2
    # The one layer at full size, over the upsampled decoder features and the stem. "pointwise":
    # a 1x1 convolution to 16 channels, then ReLU; "conv3x3" (the refiners before it): a 3x3
    # convolution to ``width``. At full size, memory traffic, not arithmetic, sets the time:
    # the 3x3 layer alone took a third of the refiner's int8 invoke.
    head: str = "pointwise"

    def __post_init__(self) -> None:
        if self.head not in _HEADS:
            raise SegrefineError(f"refiner head '{self.head}' is not one of {', '.join(_HEADS)}; "
                                 "set model.head=pointwise (the default) or conv3x3")

    @property
    def logits_hw(self) -> tuple[int, int]:
        h, w = self.input_hw
        return h // self.logits_stride, w // self.logits_stride


def _sep(x, filters: int, name: str, stride: int = 1, rate: int = 1):
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", dilation_rate=rate, name=f"{name}_dw")(x)
    x = layers.ReLU(name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, name=f"{name}_pw")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_generator(config: RefinerConfig) -> keras.Model:
    """(image RGB 0-255, segmenter logits at ``logits_hw``[, previous refined probabilities])
    at ``input_hw`` -> refined logits."""
    h, w = config.input_hw
    c, f = config.num_classes, config.width
    image = keras.Input((h, w, 3), name="image")
    logits_input = keras.Input((*config.logits_hw, c), name="logits")
    logits = logits_input
    if config.logits_stride > 1:
        logits = layers.UpSampling2D(config.logits_stride, interpolation="bilinear", name="logits_up")(logits)
    if config.softmax_stem:
        scores = layers.Softmax(name="probabilities")(logits)
    else:
        scores = layers.Rescaling(1 / 8, name="scaled_logits")(logits)
    inputs, stem = [image, logits_input], [layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(image), scores]
    if config.temporal:
        previous = keras.Input((h, w, c), name="previous")
        inputs.append(previous)
        stem.append(previous)
    x0 = layers.Concatenate(name="stem_concat")(stem)
    e1 = layers.ReLU(name="e1_relu")(layers.Conv2D(f, 3, strides=2, padding="same", name="e1")(x0))   # 1/2
    e2 = _sep(e1, 2 * f, "e2", stride=2)                                                               # 1/4
    b = _sep(e2, 2 * f, "b1")
    b = _sep(b, 2 * f, "b2", rate=2)
    b = _sep(b, 2 * f, "b3", rate=4)
    d1 = layers.UpSampling2D(2, interpolation="bilinear", name="d1_up")(b)
    d1 = _sep(layers.Concatenate(name="d1_concat")([d1, e1]), f, "d1")
    d0 = layers.UpSampling2D(2, interpolation="bilinear", name="d0_up")(d1)
    d0 = layers.Concatenate(name="d0_concat")([d0, x0])
    d0 = layers.ReLU(name="d0_relu")(_HEADS[config.head](d0, f))
    residual = layers.Conv2D(c, 1, kernel_initializer="zeros", name="residual")(d0)
    refined = layers.Add(name="refined")([logits, residual])
    return keras.Model(inputs, refined, name="refiner")


def build_discriminator(config: RefinerConfig) -> keras.Model:
    """Conditional PatchGAN with spectral normalisation: (image, class probabilities) ->
    a grid of real/fake scores, each judging a ~70 px patch, then the features of each of its
    three blocks (for a feature-matching loss)."""
    h, w = config.input_hw
    f = config.discriminator_width
    image = keras.Input((h, w, 3), name="image")
    probs = keras.Input((h, w, config.num_classes), name="probabilities")
    x = layers.Concatenate()([layers.Rescaling(1 / 127.5, offset=-1.0)(image), probs])
    features = []
    for i, filters in enumerate((f, 2 * f, 4 * f)):
        x = layers.SpectralNormalization(layers.Conv2D(filters, 4, strides=2, padding="same"), name=f"d{i}")(x)
        x = layers.LeakyReLU(0.2)(x)
        features.append(x)
    x = layers.SpectralNormalization(layers.Conv2D(1, 3, padding="same"), name="d_out")(x)
    return keras.Model([image, probs], [x, *features], name="discriminator")
