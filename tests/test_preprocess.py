"""Letterboxing: a frame of another shape keeps its aspect ratio inside the model's input, on
stride-aligned edges, and every map over the input crops back to exactly the frame."""

from __future__ import annotations

import numpy as np
import pytest

from segrefine_edge.preprocess import ALIGN, PAD_GREY, choose_fit, letterbox


@pytest.mark.parametrize(("frame_hw", "content_hw"), [((720, 1280), (272, 480)), ((272, 640), (204, 480)),
                                                      ((480, 360), (352, 264)), ((360, 480), (352, 468))])
def test_the_frame_keeps_its_shape_on_aligned_edges(frame_hw: tuple[int, int], content_hw: tuple[int, int]):
    frame = np.full((*frame_hw, 3), 200, np.uint8)
    canvas, placement = letterbox(frame, (352, 480))
    assert canvas.shape == (352, 480, 3) and (placement.height, placement.width) == content_hw
    assert placement.top % ALIGN == 0 and placement.left % ALIGN == 0
    inside = canvas[placement.top:placement.top + placement.height, placement.left:placement.left + placement.width]
    assert (inside == 200).all() and (canvas == PAD_GREY).sum() == canvas.size - inside.size


def test_a_map_at_a_quarter_of_the_input_crops_to_the_frame_exactly():
    _, placement = letterbox(np.zeros((720, 1280, 3), np.uint8), (352, 480))
    rows = np.arange(88)[:, None] * np.ones((1, 120), int)               # each row holds its index
    cropped = placement.crop(rows)
    assert cropped.shape == (placement.height // 4, 120)
    assert cropped[0, 0] * 4 == placement.top


def test_auto_pads_only_frames_of_another_shape():
    assert choose_fit((360, 480), (352, 480), "auto") == "stretch"        # CamVid 4:3: 2% apart
    assert choose_fit((720, 1280), (352, 480), "auto") == "pad"           # 16:9
    assert choose_fit((360, 480), (513, 513), "auto") == "pad"            # 4:3 into a square model
    assert choose_fit((720, 1280), (352, 480), "stretch") == "stretch"
