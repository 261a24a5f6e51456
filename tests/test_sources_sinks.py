"""Frame sources and output sinks: grammar, order, corrupt input, unwritable outputs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segrefine_edge.errors import SinkError, SourceError
from segrefine_edge.pngio import read_labels, write_labels_png
from segrefine_edge.sinks import MaskSink, VideoFileSink
from segrefine_edge.sources import ImageFilesSource, VideoFileSource, open_source


def _all(source):
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    return frames


def test_video_file_delivers_every_frame_in_order(small_video):
    with open_source(str(small_video)) as source:
        assert isinstance(source, VideoFileSource) and not source.live
        frames = _all(source)
    assert [f.index for f in frames] == list(range(12))
    assert source.size == (64, 48)


def test_real_video_properties(tree_video):
    with open_source(str(tree_video)) as source:
        assert source.size == (320, 240)
        assert len(_all(source)) == 68


def test_missing_video_and_non_video(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing.mp4"))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(SourceError):
        open_source(str(text))


def test_camera_that_does_not_open():
    with pytest.raises(SourceError, match="camera 97 could not be opened"):
        open_source("97")


def test_image_folder_and_glob_skip_unreadable(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "f1b.png").write_bytes(b"broken")
    with open_source(str(tmp_path)) as folder:
        frames = _all(folder)
    assert [f.name for f in frames] == ["f0", "f1", "f2"] and folder.skipped == 1
    with open_source(str(tmp_path / "f[02].png")) as matched:
        assert isinstance(matched, ImageFilesSource) and len(_all(matched)) == 2
    with pytest.raises(SourceError, match="no image files"):
        open_source(str(tmp_path / "*.jpg"))


def test_palette_png_round_trip(tmp_path):
    labels = np.random.default_rng(0).integers(0, 11, (30, 40), dtype=np.uint8)
    palette = np.random.default_rng(1).integers(0, 256, (11, 3), dtype=np.uint8)
    write_labels_png(tmp_path / "m.png", labels, palette)
    assert np.array_equal(read_labels(tmp_path / "m.png"), labels)
    colour = cv2.imread(str(tmp_path / "m.png"))
    assert np.array_equal(colour[0, 0], palette[labels[0, 0]][::-1])
    assert not list(tmp_path.glob(".*.tmp"))


def test_mask_sink_names_by_frame(tmp_path):
    sink = MaskSink(tmp_path / "masks", np.zeros((3, 3), np.uint8))
    sink.write(np.zeros((4, 4), np.uint8), 7)
    assert (tmp_path / "masks" / "000007.png").is_file()


def test_unwritable_outputs_fail_before_any_frame(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot write"):
        VideoFileSink(blocker / "out.mp4", 10.0, (64, 48))
    with pytest.raises(SinkError, match="cannot write masks"):
        MaskSink(blocker / "masks", np.zeros((3, 3), np.uint8))
    with pytest.raises(SinkError, match=r"use a \.mp4"):
        VideoFileSink(tmp_path / "out.gif", 10.0, (64, 48))


def test_coral_compile_script_explains_what_it_needs(tmp_path):
    """deploy/coral/compile.sh cannot run edgetpu_compiler here; it must say so, not pretend."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "deploy" / "coral" / "compile.sh"
    assert subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True).returncode == 0
    missing = subprocess.run(["bash", str(script), str(tmp_path / "none.tflite")], capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    model = tmp_path / "m_edgetpu-ready.tflite"
    model.write_bytes(b"x")
    env = {"PATH": "/usr/bin:/bin"}
    no_compiler = subprocess.run(["bash", str(script), str(model)], capture_output=True, text=True, env=env)
    assert no_compiler.returncode == 2 and "edgetpu_compiler is not installed" in no_compiler.stderr
