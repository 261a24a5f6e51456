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
        flow, _ = self.flow_and_previous(gray)
        return flow

    def flow_and_previous(self, gray: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The t -> t-1 flow and frame t-1 itself (None, None on the first frame)."""
        previous, self._previous = self._previous, gray
        if previous is None or previous.shape != gray.shape:
            return None, None
        return self._dis.calc(gray, previous, None), previous


def flow_trust(gray: np.ndarray, previous: np.ndarray, flow_to_prev: np.ndarray, tolerance: float) -> np.ndarray:
    """Per pixel of frame t, how far the flow can be trusted (0-1): 1 where frame t-1 pulled along
    the flow matches frame t, falling to 0 at twice ``tolerance`` grey levels of difference, 0
    where the flow points outside frame t-1. Where the flow did not find the motion (a fast pan,
    an occlusion, a cut), the pulled frame does not match, and neither would a pulled mask."""
    smooth = (cv2.GaussianBlur(gray, (5, 5), 0).astype(np.float32),
              cv2.GaussianBlur(previous, (5, 5), 0).astype(np.float32))
    warped, inside = pull_back(smooth[1], flow_to_prev, cv2.INTER_LINEAR)
    error = np.abs(smooth[0] - warped.reshape(smooth[0].shape))
    return np.clip(2.0 - error / tolerance, 0.0, 1.0) * inside
