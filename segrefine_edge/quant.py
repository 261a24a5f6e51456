"""Quantisation and tensor helpers: pixels to an input tensor, real values to a quantised
tensor's integers and back, from the tensor's own (scale, zero point)."""

from __future__ import annotations

import cv2
import numpy as np

from segrefine_edge.backend import TensorInfo
from segrefine_edge.contract import ModelContract


def as_uint8(values: np.ndarray, zero_point: int) -> tuple[np.ndarray, int]:
    """Shift int8 scores to uint8 (OpenCV resizes uint8 fastest); the zero point moves with them."""
    if values.dtype == np.int8:
        return (values.view(np.uint8) ^ 0x80), zero_point + 128
    return values, zero_point


def pixel_mapping(contract: ModelContract, tensor: TensorInfo) -> tuple[float, float] | None:
    """(a, b) such that an image input's tensor value (its raw integer, for a quantised input)
    is ``a * pixel + b``; None when raw pixels fit as they are (a quantised model that
    normalises inside), the fast path."""
    if not tensor.quantized:
        return (contract.input_scale, contract.input_offset)
    a = contract.input_scale / tensor.scale
    b = contract.input_offset / tensor.scale + tensor.zero_point
    raw_offset = 0.0 if tensor.dtype == np.uint8 else -128.0
    if abs(a - 1.0) < 0.01 and abs(b - raw_offset) < 0.5:
        return None
    return (a, b)


def pixels_to_tensor(image: np.ndarray, mapping: tuple[float, float] | None, tensor: TensorInfo) -> np.ndarray:
    """An HxWx3 uint8 image (already resized and in the model's colour order) as the input
    tensor's values, without the batch axis."""
    if mapping is None:
        return image.view(np.int8) ^ np.int8(-128) if tensor.dtype == np.int8 else image
    a, b = mapping
    if tensor.quantized:                                 # the mapping is already in the tensor's units
        return to_integers(image, a, b, tensor.dtype)
    return (image.astype(np.float32) * a + b).astype(tensor.dtype, copy=False)


def quantise(values: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """Real values -> the raw integers of a quantised tensor (``values / scale + zero_point``,
    rounded and clipped); ``values`` is left as it is."""
    return to_integers(values, 1.0 / tensor.scale, tensor.zero_point, tensor.dtype)


_CV_DEPTHS = {np.dtype(np.uint8): cv2.CV_8U, np.dtype(np.int8): cv2.CV_8S, np.dtype(np.uint16): cv2.CV_16U,
              np.dtype(np.int16): cv2.CV_16S, np.dtype(np.int32): cv2.CV_32S}


def to_integers(values: np.ndarray, a: float, b: float, dtype: np.dtype) -> np.ndarray:
    """``a * values + b`` rounded and clipped to an integer dtype's range. OpenCV's saturating
    arithmetic does it in one pass (0.14-0.18 ms for 176x240x11 floats against 0.40 ms for
    NumPy's scale, shift, round, clip and cast)."""
    depth = _CV_DEPTHS.get(np.dtype(dtype))
    if depth is None:
        limits = np.iinfo(dtype)
        return np.clip(np.rint(values.astype(np.float32) * a + b), limits.min, limits.max).astype(dtype)
    flat = values.reshape(values.shape[0], -1)          # OpenCV arrays have at most 3 axes
    return cv2.addWeighted(flat, a, flat, 0.0, b, dtype=depth).reshape(values.shape)
