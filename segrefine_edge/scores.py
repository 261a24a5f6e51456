"""A model's output at model resolution (ScoreMap) and the one softmax the runtime uses.

Quantised outputs stay quantised until something needs real numbers: argmax and bilinear
upsampling commute with a per-tensor affine dequantisation, so the frame path resizes and
argmaxes the raw uint8 scores (cheap, SIMD in OpenCV) and only a refiner dequantises.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class ScoreMap:
    """A model's output at model resolution.

    ``kind`` is 'labels' (``values`` HxW ints), 'sigmoid' (HxW foreground probability or its
    quantised form) or 'logits'/'probabilities' (HxWxC). For quantised tensors, ``values``
    holds the raw integers and ``real = (values - zero_point) * scale``.
    """

    kind: str
    values: np.ndarray
    scale: float = 0.0
    zero_point: int = 0

    def real(self) -> np.ndarray:
        """Values as float32 (dequantised)."""
        if self.scale:
            return (self.values.astype(np.float32) - self.zero_point) * self.scale
        return self.values.astype(np.float32, copy=False)

    def probabilities(self) -> np.ndarray:
        """HxWxC float32 class probabilities (softmax of logits; [1-p, p] for a sigmoid channel)."""
        if self.kind == "labels":
            raise ValueError("an argmax-only model gives labels, not probabilities")
        if self.kind == "logits" and self._exp_cannot_overflow():
            return self._softmax_by_table()
        x = self.real()
        if self.kind == "sigmoid":
            return np.stack([1.0 - x, x], axis=-1)
        if self.kind == "probabilities":
            return x
        return softmax(x)

    def _exp_cannot_overflow(self) -> bool:
        """Whether these are 8-bit codes whose every possible value, dequantised with this scale and
        zero point, has an exp() that neither overflows when summed over the classes nor underflows
        to zero: then exp() can be a table with no max shift. The reach is taken from the zero point
        given, not assumed to be 255 steps: a uint8 map with a zero point below 0 reaches further
        (CI found scale 0.297, zero point -44 overflowing)."""
        if not self.scale or self.values.dtype not in (np.int8, np.uint8):
            return False
        codes = np.iinfo(self.values.dtype)
        reach = max(abs(codes.min - self.zero_point), abs(codes.max - self.zero_point)) * abs(self.scale)
        classes = self.values.shape[-1] if self.values.ndim == 3 else 1
        limits = np.finfo(np.float32)
        return reach < min(np.log(limits.max / classes), -np.log(limits.tiny)) - 1.0   # 1: rounding's margin

    def _softmax_by_table(self) -> np.ndarray:
        """Softmax of 8-bit quantised logits whose span cannot overflow exp(): an 8-bit code has 256
        values, so exp() of each dequantised code is a table and OpenCV's LUT looks the map up in it
        (0.29 against 1.87 ms for 176x240x11 int8 logits). The table's codes are dequantised by
        ``real()`` itself, so the probabilities are the same to the bit."""
        codes = np.arange(256, dtype=np.uint8).view(self.values.dtype)    # the code whose bits are each index
        table = np.exp(ScoreMap(self.kind, codes, self.scale, self.zero_point).real())
        rows = np.ascontiguousarray(self.values).view(np.uint8).reshape(self.values.shape[0], -1)
        return _normalised(cv2.LUT(rows, table).reshape(self.values.shape))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last (short) axis without NumPy's reductions along it, which cost
    3-4 ms on a 176x240x11 map: channel planes are maxed one at a time (the max shift keeps
    exp() finite whatever the logits) and summed with a matrix-vector product."""
    peak = x[..., 0].copy()
    for index in range(1, x.shape[-1]):
        np.maximum(peak, x[..., index], out=peak)
    return _normalised(np.exp(x - peak[..., None]))


def _normalised(e: np.ndarray) -> np.ndarray:
    """``e`` divided in place by its sum over the last axis, taken as a matrix-vector product."""
    e /= (e @ np.ones(e.shape[-1], np.float32))[..., None]
    return e
