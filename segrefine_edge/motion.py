"""Dense motion between consecutive frames, and pulling a previous frame's map along it.

Shared by the temporal-consistency metric (which warps the previous prediction before
comparing) and the temporal refiner (which warps its previous mask before reusing it), so
both mean the same thing by "where was this pixel in the last frame".
"""

from __future__ import annotations

import cv2
import numpy as np


def pull_back(values: np.ndarray, flow_to_prev: np.ndarray, interpolation: int = cv2.INTER_NEAREST
              ) -> tuple[np.ndarray, np.ndarray]:
    """Pull ``values`` (frame t-1, HxW or HxWxC) to frame t along ``flow_to_prev`` (t -> t-1,
    per pixel of t). Returns the warped values and the mask of pixels whose source lies inside
    frame t-1 (the others copy the nearest border)."""
    h, w = values.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = xs + flow_to_prev[..., 0]
    map_y = ys + flow_to_prev[..., 1]
    warped = cv2.remap(values, map_x, map_y, interpolation=interpolation, borderMode=cv2.BORDER_REPLICATE)
    if values.ndim == 3 and warped.ndim == 2:
        warped = warped[..., None]
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return warped, inside


class FlowTracker:
    """Feed grey frames in order; ``flow_to_previous`` gives the t -> t-1 flow (None on the
    first frame). DIS optical flow, as the TC metric uses; ``preset`` trades accuracy for time."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> None:
        self._dis = cv2.DISOpticalFlow_create(preset)
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        self._previous = None

    def flow_to_previous(self, gray: np.ndarray) -> np.ndarray | None:
        previous, self._previous = self._previous, gray
        if previous is None or previous.shape != gray.shape:
            return None
        return self._dis.calc(gray, previous, None)
