"""Drawing: views, and text (HUD, legend) that stays legible on any frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrefine_edge.postprocess import classes_in
from segrefine_edge.render import Renderer, RenderOptions

_GREEN = (40, 160, 90)   # a colour no anti-aliased grey text pixel can take


def _white_pixels_touching_the_background(image: np.ndarray) -> int:
    """White text pixels with untouched background within 2 px: text that left its backing."""
    white = (image.min(axis=2) > 220).astype(np.uint8)
    background = np.all(image == _GREEN, axis=2).astype(np.uint8)
    near_background = cv2.dilate(background, np.ones((5, 5), np.uint8)) > 0
    return int(np.count_nonzero(white.astype(bool) & near_background))


@pytest.mark.parametrize("size_wh", [(320, 240), (960, 540), (1920, 1080)])
def test_hud_and_legend_text_stays_on_its_backing(size_wh):
    """The HUD was a thick black copy and a thin white one from the same origin; Hershey glyphs
    advance further when thicker, so on a 960x540 clip the two drifted into two strings."""
    width, height = size_wh
    labels = np.zeros((height, width), np.uint8)
    labels[:, width // 2:] = 1
    renderer = Renderer(["Road", "SignSymbol"], np.array([[200, 30, 30], [30, 30, 200]], np.uint8),
                        RenderOptions(view="overlay", alpha=0.0, legend=True, hud=True))
    frame = np.full((height, width, 3), _GREEN, np.uint8)
    out = renderer.render(frame, labels, {"FPS": 11.6, "segment ms": 52.6, "refine ms": 13.5})
    assert np.count_nonzero(out.min(axis=2) > 220) > 200           # the text is there
    assert _white_pixels_touching_the_background(out) == 0


def test_text_grows_with_the_frame():
    renderer = Renderer(["a"], np.zeros((1, 3), np.uint8), RenderOptions(legend=False))
    heights = []
    for height in (480, 2160):
        out = renderer.render(np.full((height, height, 3), _GREEN, np.uint8), np.zeros((height, height), np.uint8),
                              {"FPS": 10.0})
        rows = np.flatnonzero((out.min(axis=2) > 220).any(axis=1))
        heights.append(rows.max() - rows.min())
    assert heights[1] > 1.5 * heights[0]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_every_label_gets_its_palette_colour_and_every_class_present_is_found(dtype):
    """The colours come from OpenCV's user colour map and the classes present from its histogram
    (both faster than numpy's indexing and bincount): any label gets exactly its palette colour in
    BGR (black past the palette, and labels past 255 are drawn as 255), and the histogram finds every
    class the frame holds, and no other."""
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (12, 3)).astype(np.uint8)
    values = [0, 3, 11, 13, 300] if dtype == np.uint16 else [0, 3, 11, 13]
    labels = rng.choice(values, (37, 53)).astype(dtype)
    renderer = Renderer([f"class {i}" for i in range(12)], palette, RenderOptions(view="mask"))
    expected = np.zeros((256, 3), np.uint8)
    expected[:12] = palette[:, ::-1]
    assert np.array_equal(renderer.colourise(labels), expected[np.minimum(labels, 255)])
    assert np.array_equal(classes_in(labels), np.unique(labels))
