"""Frame sources and output sinks: grammar, order, corrupt input, unwritable outputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from segrefine_edge.errors import SinkError, SourceError
from segrefine_edge.pipeline import SegmentationResult
from segrefine_edge.pngio import read_labels, write_labels_png
from segrefine_edge.scores import ScoreMap
from segrefine_edge.sinks import SinkContext, SinkItem, formats, open_sink
from segrefine_edge.sinks.display import DisplaySink
from segrefine_edge.sinks.masks import MaskSink
from segrefine_edge.sinks.stats import StatsSink
from segrefine_edge.sinks.video import VideoFileSink
from segrefine_edge.sources import Frame, ImageFilesSource, VideoFileSource, open_source

_PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)


def _context(summary: dict | None = None) -> SinkContext:
    return SinkContext(10.0, (64, 48), (64, 48), _PALETTE, ["a", "b", "c"], lambda: summary or {"frames": 0})


def _item(index: int, name: str | None = None, value: int = 1) -> SinkItem:
    labels = np.full((48, 64), value, np.uint8)
    result = SegmentationResult(labels, ScoreMap("labels", labels), {})
    view = np.full((48, 64, 3), 40 * value, np.uint8)
    return SinkItem(Frame(np.zeros((48, 64, 3), np.uint8), index, index / 10.0, name), result, view)


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
    with MaskSink(tmp_path / "masks", _PALETTE) as sink:
        sink.write(_item(7))
    assert np.all(read_labels(tmp_path / "masks" / "000007.png") == 1)


def test_mask_names_never_collide(tmp_path):
    """--loop over an image folder replays its names, and a.png beside a.jpg share a stem: every
    frame still gets its own mask."""
    with MaskSink(tmp_path / "masks", _PALETTE) as sink:
        for index, name in enumerate(["a", "b", "a", "a", "b"]):
            sink.write(_item(index, name, value=index % 3))
    names = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert names == ["a.png", "a_000002.png", "a_000003.png", "b.png", "b_000004.png"]
    assert np.all(read_labels(tmp_path / "masks" / "a_000002.png") == 2)


@pytest.mark.parametrize(("spec", "kind", "cls"), [
    ("out.mp4", "video", VideoFileSink), ("out.AVI", "video", VideoFileSink), ("masks/", "masks", MaskSink),
    ("masks", "masks", MaskSink), ("stats.json", "stats", StatsSink)])
def test_open_sink_picks_the_format_the_user_typed(tmp_path, monkeypatch, spec, kind, cls):
    monkeypatch.chdir(tmp_path)
    with open_sink(spec, _context()) as sink:
        assert isinstance(sink, cls) and formats()[kind].accepts(spec)
        sink.write(_item(0))


def test_open_sink_display_names_a_window_or_explains(monkeypatch):
    """'display' is a window; without a GUI build of OpenCV the error says what to install."""
    from segrefine_edge.sinks import display

    monkeypatch.setattr(display, "_opencv_has_gui", lambda: False)
    with pytest.raises(SinkError, match="opencv-python"):
        open_sink("display", _context())
    assert display.accepts("display") and not display.accepts("display.mp4")
    assert DisplaySink.needs_view


def test_open_sink_refuses_what_it_cannot_tell_and_unknown_kinds(tmp_path):
    with pytest.raises(SinkError, match="cannot tell what to write"):
        open_sink(str(tmp_path / "out.xyz"), _context())
    with pytest.raises(SinkError, match="unknown output kind 'gif'"):
        open_sink(str(tmp_path / "x"), _context(), kind="gif")
    assert open_sink(str(tmp_path / "masks.v2"), _context(), kind="masks").folder.is_dir()


def test_every_format_is_one_module_with_the_factory_trio():
    """Adding an output is adding one file to segrefine_edge/sinks: the factory finds it."""
    assert set(formats()) >= {"video", "masks", "stats", "display"}
    for module in formats().values():
        assert callable(module.accepts) and callable(module.open_sink)


def test_stats_sink_writes_the_summary_at_close_and_refuses_a_folder(tmp_path):
    with pytest.raises(SinkError, match="is a folder"):
        StatsSink(tmp_path, _context())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot write the stats"):
        StatsSink(blocker / "s.json", _context())
    sink = StatsSink(tmp_path / "s.json", _context({"frames": 3, "fps": 9.5}))
    sink.write(_item(0))
    assert not (tmp_path / "s.json").exists()
    sink.close()
    assert json.loads((tmp_path / "s.json").read_text()) == {"frames": 3, "fps": 9.5}
    assert not list(tmp_path.glob(".*.tmp"))


def test_video_sink_writes_playable_frames(tmp_path):
    with VideoFileSink(tmp_path / "out.mp4", 10.0, (64, 48)) as sink:
        for index in range(3):
            sink.write(_item(index))
    with open_source(str(tmp_path / "out.mp4")) as source:
        assert len(_all(source)) == 3


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


@pytest.mark.parametrize(("uri", "shown"), [
    ("rtsp://admin:s3cret@10.0.0.5:554/live", "rtsp://***@10.0.0.5:554/live"),
    ("http://user@cam.local/mjpg", "http://***@cam.local/mjpg"),
    ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
    ("clip@2x.mp4", "clip@2x.mp4"),
])
def test_credentials_in_a_source_are_never_shown(uri, shown):
    from segrefine_edge.sources import redact

    assert redact(uri) == shown


def test_start_in_an_output_path_never_names_an_earlier_runs_file(tmp_path):
    """A service restarted after a crash must write beside its earlier files, never over them."""
    from datetime import datetime, timezone

    from segrefine_edge.sinks import expand_start

    started = datetime(2026, 12, 2, 15, 30, 0, tzinfo=timezone.utc)
    spec = str(tmp_path / "view-{start}.mp4")
    first = expand_start(spec, started)
    assert first == str(tmp_path / "view-20261202-153000.mp4")
    Path(first).write_bytes(b"earlier run")
    second = expand_start(spec, started)                       # a restart within the same second
    assert second == str(tmp_path / "view-20261202-153000-2.mp4")
    assert expand_start(str(tmp_path / "plain.mp4"), started) == str(tmp_path / "plain.mp4")
    assert expand_start(None, started) is None
