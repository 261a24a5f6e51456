"""`stream` under faults, against a real process: SIGKILL, SIGHUP, a full disk, outputs that
would overwrite inputs. Each output written before the fault must stay readable."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

CLI = [sys.executable, "-m", "segrefine_edge"]


@pytest.fixture(scope="session")
def fast_model(peers: Path) -> Path:
    return peers / "coral" / "deeplabv3_mnv2_dm05_pascal_quant.tflite"


def _frames_in(video: Path) -> int:
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    return frames


def _start(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "stream", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


def _wait_for(path: Path, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < size):
        time.sleep(0.1)
    assert path.exists() and path.stat().st_size >= size, f"{path} never reached {size} bytes"


def test_a_killed_process_leaves_a_playable_mp4(vtest: Path, fast_model: Path, tmp_path: Path):
    """SIGKILL cannot be handled: the MP4 is written in fragments, so what was flushed plays."""
    out = tmp_path / "out.mp4"
    process = _start(str(vtest), "-m", str(fast_model), "--no-display", "--out", str(out), "--quiet")
    _wait_for(out, 200_000)
    process.kill()
    process.communicate(timeout=30)
    assert 0 < _frames_in(out) < 795


def _hangup_as_a_terminal_leaves_it() -> None:
    """A suite run under nohup would hand the child SIGHUP ignored, which it keeps (as the next test
    checks); a terminal's child gets it as the default."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def test_sighup_stops_like_sigterm_and_the_exit_code_says_so(vtest: Path, fast_model: Path, tmp_path: Path):
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    process = _start(str(vtest), "-m", str(fast_model), "--no-display", "--out", str(out), "--stats-json", str(stats),
                     preexec_fn=_hangup_as_a_terminal_leaves_it)
    _wait_for(out, 100_000)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 129, stderr
    assert "interrupted by SIGHUP" in stderr and "Traceback" not in stderr
    written = json.loads(stats.read_text())["frames"]
    assert _frames_in(out) == written > 0


def _as_under_nohup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_under_nohup_a_closed_terminal_does_not_stop_the_run(vtest: Path, fast_model: Path, tmp_path: Path):
    """nohup starts the command with SIGHUP ignored; the stop handlers must leave it so (they once
    replaced it, and a closed terminal ended a run started with nohup). SIGTERM still stops it."""
    out = tmp_path / "out.mp4"
    process = _start(str(vtest), "-m", str(fast_model), "--no-display", "--loop", "--out", str(out),
                     preexec_fn=_as_under_nohup)
    _wait_for(out, 100_000)
    process.send_signal(signal.SIGHUP)
    time.sleep(2.0)
    running = process.poll() is None
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert running, stderr
    assert process.returncode == 143 and "interrupted by SIGTERM" in stderr and "SIGHUP" not in stderr


def _on_a_full_disk(limit: int, *args: str) -> str:
    """Run stream with every file capped at ``limit`` bytes (a failed write then returns EFBIG, as
    a full disk returns ENOSPC); asserts exit 2 without a traceback and returns stderr."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    process = _start(*args, "--no-display", preexec_fn=apply)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and "Traceback" not in stderr, stderr[-2000:]
    return stderr


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_video_playable(vtest: Path, fast_model: Path,
                                                                               tmp_path: Path):
    out = tmp_path / "out.mp4"
    stderr = _on_a_full_disk(400_000, str(vtest), "-m", str(fast_model), "--out", str(out))
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write video" in errors[0]
    assert 0 < _frames_in(out) < 795


def test_a_full_disk_under_masks_leaves_no_temporary_file_and_one_line(vtest: Path, fast_model: Path,
                                                                        tmp_path: Path):
    masks = tmp_path / "masks"
    assert "cannot write" in _on_a_full_disk(4_000, str(vtest), "-m", str(fast_model), "--masks", str(masks))
    assert not list(masks.glob(".*.tmp")) and not list(masks.glob("*.tmp"))
    for mask in masks.glob("*.png"):
        assert cv2.imread(str(mask), cv2.IMREAD_UNCHANGED) is not None     # every mask left is whole


@pytest.mark.parametrize("target", ["video", "masks", "stats"])
def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path: Path, fast_model: Path, target: str):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(3):
        cv2.imwrite(str(frames / f"f{index}.png"), np.full((48, 64, 3), 60 * (index + 1), np.uint8))
    video = tmp_path / "in.mp4"
    if target == "video":
        source, args = video, ["--out", str(video)]
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
        for index in range(5):
            writer.write(cv2.imread(str(frames / f"f{index % 3}.png")))
        writer.release()
    elif target == "masks":
        source, args = frames, ["--masks", str(frames)]
    else:
        source, args = frames / "f0.png", ["--stats-json", str(frames / "f0.png")]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = subprocess.run([*CLI, "stream", str(source), "-m", str(fast_model), "--no-display", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "input" in result.stderr and "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_truncated_video_says_where_it_ended(vtest: Path, fast_model: Path, tmp_path: Path):
    truncated = tmp_path / "cut.avi"
    data = vtest.read_bytes()
    truncated.write_bytes(data[: len(data) * 3 // 10])
    stats = tmp_path / "stats.json"
    result = subprocess.run([*CLI, "stream", str(truncated), "-m", str(fast_model), "--no-display", "--quiet",
                             "--stats-json", str(stats)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(stats.read_text())
    assert summary["declared_frames"] == 795 and 0 < summary["frames"] < 795
    assert f"ended after {summary['frames']} of the 795 frames" in result.stderr


def test_skipped_images_are_named(tmp_path: Path, fast_model: Path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index in range(2):
        cv2.imwrite(str(frames / f"f{index}.png"), np.full((48, 64, 3), 90, np.uint8))
    (frames / "f1b.png").write_bytes(b"broken")
    result = subprocess.run([*CLI, "stream", str(frames), "-m", str(fast_model), "--no-display", "--quiet"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"unreadable, skipped: {frames / 'f1b.png'}" in result.stderr


def test_a_one_pixel_input_with_a_video_out_says_it_is_too_small(tmp_path: Path, fast_model: Path):
    frames = tmp_path / "tiny"
    frames.mkdir()
    cv2.imwrite(str(frames / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    result = subprocess.run([*CLI, "stream", str(frames), "-m", str(fast_model), "--no-display", "--no-legend",
                             "--out", str(tmp_path / "out.mp4")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "too small for a video" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.train
def test_a_classifier_is_refused_by_stream_and_eval_for_what_it_is(tmp_path: Path, camvid: Path):
    """A real classifier .tflite (output [1, 10]) is no segmenter: both commands say what it looks like."""
    pytest.importorskip("tensorflow")
    import keras

    from segrefine_edge.conversion.quantize import to_tflite

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs)))
    classifier = tmp_path / "classifier.tflite"
    classifier.write_bytes(to_tflite(model, "float32"))
    image = sorted((camvid / "val").iterdir())[0]
    stream = subprocess.run([*CLI, "stream", str(image), "-m", str(classifier), "--no-display"],
                            capture_output=True, text=True, timeout=120)
    evaluate = subprocess.run([*CLI, "eval", "--data", str(camvid), "-m", str(classifier)],
                              capture_output=True, text=True, timeout=120)
    for result in (stream, evaluate):
        assert result.returncode == 2 and "looks like a classifier" in result.stderr, result.stderr[-1000:]
        assert "class-map" not in result.stderr and "Traceback" not in result.stderr
