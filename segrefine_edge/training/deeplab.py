"""DeepLabv3+ on a keras.applications MobileNetV2 backbone, built from EdgeTPU-mappable ops only.

Every op here converts to full-int8 TFLite and is in Coral's list of mapped ops: (depthwise)
convolutions with equal x/y dilation, ReLU, Mean over x/y, concatenation, and resizes between
static shapes. The model is rebuilt for each input size (training crops, export size) and
weights move between builds, so no shape is ever dynamic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
from keras import layers

# Stride-2 inverted-residual blocks of keras' MobileNetV2, and the last block index.
_STRIDE2_BLOCKS = (1, 3, 6, 13)
_LAST_BLOCK = 16
_LOW_LEVEL_FEATURE = "block_3_expand_relu"  # stride 4
# Block 0's output (16 channels, stride 2): block 1's 96-channel expansion cost about as much
# time in int8 (most of the stage's cost is its resizes and concatenation at stride 2).
_FINE_FEATURE = "expanded_conv_project_BN"
_FINE_LOW_FILTERS = 16
OUTPUT_UPSAMPLE = "logits_up"               # the last layer: decoder logits to the input size


@dataclass
class SegmenterConfig:
    """Architecture of the segmenter; saved with every run and every exported model."""

    num_classes: int = 11
    alpha: float = 1.0
    output_stride: int = 16
    aspp_rates: list[int] = field(default_factory=lambda: [6, 12, 18])
    aspp_filters: int = 256
    decoder_filters: int = 256
    low_level_filters: int = 48
    dropout: float = 0.1
    bn_momentum: float = 0.9
    # The backbone feature ASPP reads. "block_13_expand_relu" (576 channels) is the last one at
    # stride 16, before MobileNetV2 would go to stride 32: blocks 13-16 are not run at all. It beat
    # DeepLab's "block_16_project_BN" and "out_relu" on CamVid (docs/experiments.md).
    high_level_feature: str = "block_13_expand_relu"
    # > 0 adds a stride-2 stage: the decoder's features, reduced to this many channels and
    # upsampled, meet block 0's stride-2 features in one separable block whose 1x1 output is added
    # to the stride-4 logits upsampled x2. That output starts at zero, so a run that starts from
    # a stride-4 model's weights starts from nearly that model's predictions (two x2 bilinear
    # upsamples instead of one x4). Meant for poles, one to three pixels wide at stride 4; it did
    # not lift them (docs/experiments.md), so the shipped model has none.
    fine_filters: int = 0


# === Backbone ===


def _dilated_layer(layer: keras.layers.Layer, changes: dict[str, dict]) -> keras.layers.Layer:
    """Recreate ``layer`` with config changes, or return a fresh copy of it unchanged."""
    config = layer.get_config()
    config.update(changes.get(layer.name, {}))
    return layer.__class__.from_config(config)


def _backbone_changes(output_stride: int) -> dict[str, dict]:
    """Config edits that turn MobileNetV2's stride-32 tail into atrous blocks (DeepLab's trick)."""
    changes: dict[str, dict] = {}
    stride, rate = 2, 1  # after the stem
    for block in range(1, _LAST_BLOCK + 1):
        name = f"block_{block}_depthwise"
        if block in _STRIDE2_BLOCKS:
            if stride >= output_stride:
                changes[name] = {"strides": (1, 1), "dilation_rate": (rate, rate)}
                changes[f"block_{block}_pad"] = {"padding": ((rate, rate), (rate, rate))}
                rate *= 2
                continue
            stride *= 2
        if rate > 1:
            changes[name] = {"dilation_rate": (rate, rate)}
    return changes


def build_backbone(
    input_shape: tuple[int, int, int], alpha: float, output_stride: int, weights: str | None
) -> keras.Model:
    """MobileNetV2 without top, dilated to ``output_stride``, BatchNorm frozen.

    BatchNorm is frozen because keras' MobileNetV2 uses momentum 0.999 and the shipped weights
    have BN folded: trainable statistics never catch up in a short run and inference collapses.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, not {output_stride}")
    base = keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=alpha, include_top=False, weights=None
    )
    if weights:
        base.load_weights(weights)
    if output_stride != 32:
        changes = _backbone_changes(output_stride)
        dilated = keras.models.clone_model(base, clone_function=lambda lyr: _dilated_layer(lyr, changes))
        dilated.set_weights(base.get_weights())
        base = dilated
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return base


# === Layers ===


def _conv_bn_relu(x, filters: int, name: str, momentum: float, kernel: int = 1):
    """Conv, BatchNorm, ReLU. ``momentum`` 0.9, not keras' 0.99: with a few thousand steps the
    moving statistics must catch up with the batch statistics or inference collapses."""
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _separable_conv_bn_relu(x, filters: int, name: str, momentum: float, rate: int = 1):
    x = layers.DepthwiseConv2D(3, padding="same", dilation_rate=rate, use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(name=f"{name}_dw_relu")(x)
    return _conv_bn_relu(x, filters, f"{name}_pw", momentum)


def _aspp(x, config: SegmenterConfig, feature_hw: tuple[int, int]):
    """Atrous spatial pyramid pooling with an image-pooling branch (mean over x/y, then broadcast)."""
    m = config.bn_momentum
    branches = [_conv_bn_relu(x, config.aspp_filters, "aspp_1x1", m)]
    for rate in config.aspp_rates:
        branches.append(_separable_conv_bn_relu(x, config.aspp_filters, f"aspp_r{rate}", m, rate))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    # No BatchNorm here: over a batch of crops the pooled 1x1 features barely vary, so its
    # moving variance ends up tiny and any full-frame input at inference is amplified into
    # garbage (val mIoU fell from 0.37 to 0.11 while training loss kept falling).
    pooled = layers.Conv2D(config.aspp_filters, 1, name="aspp_pool_proj")(pooled)
    pooled = layers.ReLU(name="aspp_pool_proj_relu")(pooled)
    branches.append(layers.UpSampling2D(size=feature_hw, interpolation="nearest", name="aspp_pool_up")(pooled))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_bn_relu(x, config.aspp_filters, "aspp_proj", m)
    return layers.Dropout(config.dropout, name="aspp_dropout")(x)


# === Functional Model ===


def build_segmenter(
    config: SegmenterConfig, input_hw: tuple[int, int], backbone_weights: str | None = None
) -> keras.Model:
    """DeepLabv3+ taking RGB float in [0, 255] at ``input_hw``; returns logits at ``input_hw``.

    Normalisation to [-1, 1] is inside the model, so the int8 model's input is plain uint8 RGB.
    ``input_hw`` must be divisible by ``output_stride`` and by 4 (decoder stride).
    """
    h, w = input_hw
    if h % config.output_stride or w % config.output_stride:
        raise ValueError(f"input size {h}x{w} must be divisible by the output stride {config.output_stride}")
    inputs = keras.Input((h, w, 3), name="image")
    backbone = build_backbone((h, w, 3), config.alpha, config.output_stride, backbone_weights)
    feature_names = [_LOW_LEVEL_FEATURE, config.high_level_feature] + ([_FINE_FEATURE] if config.fine_filters else [])
    features = keras.Model(backbone.inputs, [backbone.get_layer(name).output for name in feature_names], name="backbone")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(inputs)
    low, high, *fine = features(x)
    fh, fw = high.shape[1:3]        # block 13's input stays at stride 16 even when the tail is at 32
    x = _aspp(high, config, (fh, fw))
    x = layers.UpSampling2D(size=(h // 4) // fh, interpolation="bilinear", name="decoder_up")(x)
    m = config.bn_momentum
    low = _conv_bn_relu(low, config.low_level_filters, "decoder_low", m)
    x = layers.Concatenate(name="decoder_concat")([x, low])
    x = _separable_conv_bn_relu(x, config.decoder_filters, "decoder_1", m)
    x = _separable_conv_bn_relu(x, config.decoder_filters, "decoder_2", m)
    logits = layers.Conv2D(config.num_classes, 1, name="logits")(x)
    stride = 4
    if fine:
        logits, stride = _fine_stage(x, fine[0], logits, config), 2
    outputs = layers.UpSampling2D(size=stride, interpolation="bilinear", name=OUTPUT_UPSAMPLE)(logits)
    return keras.Model(inputs, outputs, name="deeplabv3plus_mobilenetv2")


def _fine_stage(decoder, fine, logits, config: SegmenterConfig):
    """Stride-2 logits: the stride-4 logits upsampled plus a correction from block 0's features."""
    m = config.bn_momentum
    x = _conv_bn_relu(decoder, config.fine_filters, "fine_reduce", m)
    x = layers.UpSampling2D(size=2, interpolation="bilinear", name="fine_features_up")(x)
    fine = _conv_bn_relu(fine, _FINE_LOW_FILTERS, "fine_low", m)
    x = layers.Concatenate(name="fine_concat")([x, fine])
    x = _separable_conv_bn_relu(x, config.fine_filters, "fine_1", m)
    correction = layers.Conv2D(config.num_classes, 1, kernel_initializer="zeros", name="fine_correction")(x)
    logits = layers.UpSampling2D(size=2, interpolation="bilinear", name="fine_logits_up")(logits)
    return layers.Add(name="fine_logits")([logits, correction])


def decoder_logits(model: keras.Model):
    """The model's logits at the decoder's resolution (1/4 or 1/2 of the input), before the
    final bilinear upsample, or None when ``model`` is not one of ours."""
    try:
        return model.get_layer(OUTPUT_UPSAMPLE).input
    except ValueError:
        return None
