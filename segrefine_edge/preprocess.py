"""The one resize policy for images on their way into a model.

The runtime, int8 calibration and conversion's validation all resize through here, so the
agreement between a converted model and its float original measures the conversion alone,
not two ways of resizing (the runtime once resized CamVid's 360 rows to 352 bilinearly while
calibration used area averaging).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def resize_image(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``image`` at ``hw`` (height, width): area averaging where no side grows (it does not
    alias when shrinking), bilinear where one does; returned as is when the size already fits."""
    h, w = hw
    if image.shape[:2] == (h, w):
        return image
    grows = h > image.shape[0] or w > image.shape[1]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR if grows else cv2.INTER_AREA)


FITS = ("auto", "stretch", "pad")
# 'auto' pads a frame whose aspect ratio is further than this from the input's: CamVid's 4:3 into
# 480x352 (2% apart) gained nothing from padding (val mIoU -0.1 to -0.3), 16:9 crops of it gained
# 1.5-1.9 points and 2.35:1 crops 9 (docs/experiments.md)
ASPECT_TOLERANCE = 0.1
PAD_GREY = 127      # training pads scaled-down crops with mid-grey (labelled void): the model has seen it
ALIGN = 4           # the content box starts and ends on multiples of the output stride, so crops are exact


@dataclass(frozen=True)
class Placement:
    """Where a padded frame sits inside the model's input (rows, columns, in input pixels)."""

    input_hw: tuple[int, int]
    top: int
    left: int
    height: int
    width: int

    def crop(self, values: np.ndarray) -> np.ndarray:
        """The part of a map over the model's input (at any resolution of it) that covers the frame."""
        h, w = values.shape[:2]
        big_h, big_w = self.input_hw
        return values[self.top * h // big_h:(self.top + self.height) * h // big_h,
                      self.left * w // big_w:(self.left + self.width) * w // big_w]


def choose_fit(frame_hw: tuple[int, int], input_hw: tuple[int, int], fit: str) -> str:
    """'stretch' or 'pad' for this frame: ``fit`` itself, or for 'auto' whether the shapes differ."""
    if fit != "auto":
        return fit
    frame_aspect, input_aspect = frame_hw[1] / frame_hw[0], input_hw[1] / input_hw[0]
    return "pad" if abs(frame_aspect / input_aspect - 1) > ASPECT_TOLERANCE else "stretch"


def letterbox(image: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, Placement]:
    """``image`` scaled to fit ``hw`` with its aspect ratio kept, centred on mid-grey.

    Squashing a 16:9 or 2.35:1 frame into the model's 4:3-ish input makes every object narrower
    than anything the model was trained on; padding keeps shapes and costs resolution instead.
    """
    big_h, big_w = hw
    h, w = image.shape[:2]
    scale = min(big_h / h, big_w / w)
    height = min(big_h, max(ALIGN, round(h * scale / ALIGN) * ALIGN))
    width = min(big_w, max(ALIGN, round(w * scale / ALIGN) * ALIGN))
    top = (big_h - height) // 2 // ALIGN * ALIGN
    left = (big_w - width) // 2 // ALIGN * ALIGN
    canvas = np.full((big_h, big_w, 3), PAD_GREY, np.uint8)
    canvas[top:top + height, left:left + width] = resize_image(image, (height, width))
    return canvas, Placement(hw, top, left, height, width)
