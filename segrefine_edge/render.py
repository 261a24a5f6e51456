"""Draw labels on frames: overlay, mask, side-by-side, contours; a legend and a HUD."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from segrefine_edge.postprocess import classes_in

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
        # A user colour map is one pass over the labels: 6x faster than a 3-channel LUT of merged copies
        return cv2.applyColorMap(small, self.lut)

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
        present = [i for i in classes_in(labels) if i >= 256 or not self.hidden[i]][:20]
        scale = text_scale(image)
        names = [(self.labels[i] if i < len(self.labels) else f"class {i}")[:16] for i in present]
        box_h = text_box_size("Mg", scale)[1]
        widest = max((text_box_size(name, scale)[0] for name in names), default=0)
        x0 = image.shape[1] - widest - box_h - 8
        for row, (index, name) in enumerate(zip(present, names, strict=True)):
            y = 6 + row * (box_h + 2)
            colour = tuple(int(c) for c in self.lut[min(index, 255), 0])
            cv2.rectangle(image, (x0, y), (x0 + box_h - 1, y + box_h - 1), colour, -1)
            draw_text(image, name, (x0 + box_h, y), scale)

    @staticmethod
    def _draw_hud(image: np.ndarray, hud: dict[str, float]) -> None:
        text = "  ".join(f"{k} {v:.1f}" for k, v in hud.items())
        draw_text(image, text, (6, 6), text_scale(image))


_PAD = 3


def text_scale(image: np.ndarray) -> float:
    """A Hershey font scale that reads at the image's size: 0.5 up to 720 lines, growing beyond."""
    return max(0.5, image.shape[0] / 1440)


def _thickness(scale: float) -> int:
    return 1 if scale < 0.9 else 2


def text_box_size(text: str, scale: float) -> tuple[int, int]:
    """(width, height) of the box ``draw_text`` draws for ``text``."""
    thickness = _thickness(scale)
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    # Descenders (g, y, p) reach past the baseline getTextSize reports by the stroke's width
    return width + 2 * _PAD, height + baseline + thickness + 2 * _PAD


def draw_text(image: np.ndarray, text: str, top_left: tuple[int, int], scale: float) -> None:
    """White text on a dark box behind it, legible on any background.

    An outline drawn as a thicker black copy does not work with Hershey fonts: thicker glyphs
    advance further, so the two copies drift apart along the line.
    """
    thickness = _thickness(scale)
    (_, height), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    box_w, box_h = text_box_size(text, scale)
    x, y = top_left
    box = image[max(y, 0):y + box_h, max(x, 0):x + box_w]
    box[:] = (box * 0.25).astype(np.uint8)
    cv2.putText(image, text, (x + _PAD, y + _PAD + height), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
