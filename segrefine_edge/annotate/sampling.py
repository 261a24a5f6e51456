"""Which frames of a video to annotate: every Nth, a rate, or one per scene change.

A scene change is a jump in the colour histogram between consecutive frames (Bhattacharyya
distance of hue-saturation histograms at 64x36); ``--scenes`` takes the first frame, each
change, and at least one frame every ``max_gap`` seconds, so a long static shot is not left
unsampled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from segrefine_edge.errors import SegrefineError

SCENE_DISTANCE = 0.35     # Bhattacharyya distance between HS histograms that counts as a cut


@dataclass(frozen=True)
class Sampling:
    """Exactly one of ``every`` (frames) and ``fps`` (frames per second of video), or ``scenes``."""

    every: int | None = None
    fps: float | None = None
    scenes: bool = False
    max_gap: float = 10.0

    def __post_init__(self) -> None:
        chosen = sum(x is not None and x is not False for x in (self.every, self.fps, self.scenes or None))
        if chosen > 1:
            raise SegrefineError("choose one of --every, --fps and --scenes")
        if self.every is not None and self.every < 1:
            raise SegrefineError("--every must be 1 or more")
        if self.fps is not None and not self.fps > 0:
            raise SegrefineError("--fps must be above 0")

    def to_json(self) -> dict:
        return asdict(self)

    def frame_step(self, video_fps: float) -> int:
        """The stride that --every or --fps asks for (1: every frame)."""
        if self.fps is not None:
            return max(1, round(video_fps / self.fps))
        return self.every or 1


def histogram(image_bgr: np.ndarray) -> np.ndarray:
    """A small, normalised hue-saturation histogram: cheap enough for every frame of a video."""
    small = cv2.resize(image_bgr, (64, 36), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def scene_frames(histograms: list[np.ndarray], video_fps: float, max_gap: float) -> list[int]:
    """Frame indices at each scene change, the first frame, and none more than ``max_gap`` s apart."""
    if not histograms:
        return []
    gap = max(1, round(max_gap * video_fps))
    chosen = [0]
    for index in range(1, len(histograms)):
        distance = cv2.compareHist(histograms[index - 1], histograms[index], cv2.HISTCMP_BHATTACHARYYA)
        if distance > SCENE_DISTANCE or index - chosen[-1] >= gap:
            chosen.append(index)
    return chosen
