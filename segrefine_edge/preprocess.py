"""The one resize policy for images on their way into a model.

The runtime, int8 calibration and conversion's validation all resize through here, so the
agreement between a converted model and its float original measures the conversion alone,
not two ways of resizing (the runtime once resized CamVid's 360 rows to 352 bilinearly while
calibration used area averaging).
"""

from __future__ import annotations

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
