"""Draw labels on frames: overlay, mask, side-by-side, contours; a legend and a HUD."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

VIEWS = ("overlay", "mask", "side-by-side", "contours")
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class RenderOptions:
    """How a frame is drawn. ``hidden`` class indices are never coloured (e.g. background)."""

    view: str = "overlay"
    alpha: float = 0.5
    legend: bool = True
    hud: bool = True
    hidden: set[int] = field(default_factory=set)


class Renderer:
    """Turns (frame, labels) into the picture shown or written; colours are BGR internally."""

    def __init__(self, labels: list[str], palette_rgb: np.ndarray, options: RenderOptions) -> None:
        if options.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}")
        self.labels = labels
        self.options = options
        lut = np.zeros((256, 3), np.uint8)
        n = min(len(palette_rgb), 256)
        lut[:n] = np.asarray(palette_rgb, np.uint8)[:n, ::-1]
        self.lut = lut.reshape(256, 1, 3)
        self.hidden = np.zeros(256, bool)
        self.hidden[[i for i in options.hidden if i < 256]] = True

    def output_size(self, frame_wh: tuple[int, int]) -> tuple[int, int]:
        w, h = frame_wh
        return (2 * w, h) if self.options.view == "side-by-side" else (w, h)

    def colourise(self, labels: np.ndarray) -> np.ndarray:
        small = labels if labels.dtype == np.uint8 else np.minimum(labels, 255).astype(np.uint8)
        return cv2.LUT(cv2.merge([small, small, small]), self.lut)

    def _overlay(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        colour = self.colourise(labels)
        out = cv2.addWeighted(frame, 1.0 - self.options.alpha, colour, self.options.alpha, 0.0)
        if self.hidden.any():
            keep = self.hidden[np.minimum(labels, 255)]
            out[keep] = frame[keep]
        return out

    def _contours(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        small = labels.astype(np.uint8) if labels.dtype != np.uint8 else labels
        edges = cv2.morphologyEx(small, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        if self.hidden.any():
            edges &= ~self.hidden[small]
        out = frame.copy()
        out[edges] = self.colourise(labels)[edges]
        return out

    def render(self, frame: np.ndarray, labels: np.ndarray, hud: dict[str, float] | None = None) -> np.ndarray:
        view = self.options.view
        if view == "mask":
            out = self.colourise(labels)
        elif view == "contours":
            out = self._contours(frame, labels)
        elif view == "side-by-side":
            out = np.concatenate([frame, self._overlay(frame, labels)], axis=1)
        else:
            out = self._overlay(frame, labels)
        if self.options.legend:
            self._draw_legend(out, labels)
        if self.options.hud and hud:
            self._draw_hud(out, hud)
        return out

    def _draw_legend(self, image: np.ndarray, labels: np.ndarray) -> None:
        """Swatches and names of the (visible) classes present, top right."""
        counts = np.bincount(labels.ravel(), minlength=1)
        present = [i for i in np.flatnonzero(counts) if i >= 256 or not self.hidden[i]]
        x0 = image.shape[1] - 150
        for row, index in enumerate(present[:20]):
            y = 8 + row * 18
            colour = tuple(int(c) for c in self.lut[min(index, 255), 0])
            cv2.rectangle(image, (x0, y), (x0 + 14, y + 14), colour, -1)
            name = self.labels[index] if index < len(self.labels) else f"class {index}"
            cv2.putText(image, name[:16], (x0 + 20, y + 12), _FONT, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image, name[:16], (x0 + 20, y + 12), _FONT, 0.42, (255, 255, 255), 1, cv2.LINE_AA)

    @staticmethod
    def _draw_hud(image: np.ndarray, hud: dict[str, float]) -> None:
        text = "  ".join(f"{k} {v:.1f}" for k, v in hud.items())
        cv2.putText(image, text, (8, 20), _FONT, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, (8, 20), _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
