"""`segrefine-edge stream` end to end on real video: outputs, summary, clean stops, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from segrefine_edge import runner
from segrefine_edge.pipeline import Pipeline, PipelineOptions
from segrefine_edge.pngio import read_labels
from segrefine_edge.sources import VideoFileSource

CLI = [sys.executable, "-m", "segrefine_edge"]


def _stream(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "stream", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def fast_model(peers: Path) -> Path:
    return peers / "coral" / "deeplabv3_mnv2_dm05_pascal_quant.tflite"


def test_video_out_masks_and_stats(vtest: Path, fast_model: Path, tmp_path: Path):
    out, masks, stats = tmp_path / "out.mp4", tmp_path / "masks", tmp_path / "stats.json"
    result = _stream(str(vtest), "-m", str(fast_model), "--no-display", "--out", str(out), "--masks", str(masks),
                     "--stats-json", str(stats), "--max-frames", "20", "--view", "side-by-side")
    assert result.returncode == 0, result.stderr
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 20
    assert {"capture", "preprocess", "segment", "refine", "postprocess", "render", "write"} <= set(summary["stages"])
    assert "latency" not in summary          # a file's frames have no arrival: they wait in a queue by design
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    ok, frame = capture.read()
    assert ok and frame.shape[1] == 2 * 768                      # side by side doubles the width
    written = sorted(masks.glob("*.png"))
    assert [p.name for p in written[:2]] == ["000000.png", "000001.png"] and len(written) == 20
    assert read_labels(written[0]).shape == (576, 768)
    assert "20 frames" in result.stdout and "FPS" in result.stdout


def test_sigterm_leaves_a_playable_video(vtest: Path, fast_model: Path, tmp_path: Path):
    out = tmp_path / "out.avi"
    process = subprocess.Popen([*CLI, "stream", str(vtest), "-m", str(fast_model), "--no-display", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 50_000):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "interrupted by SIGTERM" in stderr      # a script can tell
    capture = cv2.VideoCapture(str(out))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert 0 < frames < 795 and f"{frames} frames" in stdout


def test_corrupt_frame_is_skipped_and_counted(tmp_path: Path, fast_model: Path):
    """An MJPG AVI whose 6th frame holds no JPEG data: 11 frames come out, 1 is reported skipped."""
    path = tmp_path / "corrupt.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    frames = [i for i in range(len(data) - 10) if data[i:i + 4] == b"00dc" and data[i + 8:i + 10] == b"\xff\xd8"]
    start = frames[5]                                            # the 6th JPEG frame chunk
    size = int.from_bytes(data[start + 4:start + 8], "little")
    data[start + 8:start + 8 + size] = bytes(size)
    path.write_bytes(bytes(data))
    result = _stream(str(path), "-m", str(fast_model), "--no-display", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "11 frames" in result.stdout
    assert "skipped 1 undecodable frame" in result.stderr


@pytest.mark.parametrize("args, expected", [
    (["missing.mp4"], "does not exist"),
    (["{vtest}", "--classes", "dragon"], "not one of this model's classes"),
    (["{vtest}", "-m", "{notes}"], "not a TFLite model"),
    (["{vtest}", "--out", "/proc/nope/out.mp4"], "cannot"),
    (["{vtest}", "--camera", "0"], "exactly one input"),
    (["{vtest}", "--palette", "{pairs}"], "entry 0 is [1, 2]"),
    (["{vtest}", "--palette", "{bright}"], "whole numbers 0-255"),
    (["{vtest}", "--alpha", "nan"], "not a finite number"),
    (["{vtest}", "--temporal-blend", "inf"], "is not in the range"),
    (["{vtest}", "--duration", "nan"], "not a finite number"),
    (["{vtest}", "--refiner", "missing.tflite"], "refiner missing.tflite does not exist; pass --refiner"),
    (["{vtest}", "-m", "{tmp}"], "is a folder, not a model"),
    (["{vtest}", "--out", "/proc/x.mp4"], "not a folder this user can write to"),
])
def test_bad_input_one_line(args, expected, vtest: Path, fast_model: Path, tmp_path: Path):
    notes = tmp_path / "notes.tflite"
    notes.write_text("not a model")
    (tmp_path / "pairs.json").write_text("[[1, 2], [3, 4]]")
    (tmp_path / "bright.json").write_text("[[0, 0, 0], [300, 0, 0]]")
    argv = [a.format(vtest=vtest, notes=notes, pairs=tmp_path / "pairs.json", bright=tmp_path / "bright.json",
                     tmp=tmp_path) for a in args]
    if "-m" not in argv:
        argv += ["-m", str(fast_model)]
    result = _stream(*argv, "--no-display", "--max-frames", "2")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_loop_replays_a_short_file(small_video: Path, fast_model: Path, tmp_path: Path):
    stats = tmp_path / "stats.json"
    result = _stream(str(small_video), "-m", str(fast_model), "--no-display", "--loop", "--max-frames", "30",
                     "--stats-json", str(stats))
    assert result.returncode == 0, result.stderr
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 30 and summary["peak_rss_mb"] > 0     # the clip has 12 frames


def test_a_long_recording_is_split_into_playable_files_named_by_its_start(small_video: Path, fast_model: Path,
                                                                         tmp_path: Path):
    """A service's video in segments (12 frames at 10 fps, a file per 0.3 s), every one playable,
    under a name a restart will not reuse."""
    import av

    result = _stream(str(small_video), "-m", str(fast_model), "--no-display", "--out", str(tmp_path / "view-{start}.mp4"),
                     "--segment-minutes", "0.005")
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("view-*.mp4"))
    assert [f.name[-9:] for f in files] == ["-0001.mp4", "-0002.mp4", "-0003.mp4", "-0004.mp4"]
    assert "{start}" not in files[0].name and files[0].name[5:13].isdigit()
    counts = []
    for path in files:
        with av.open(str(path)) as container:
            counts.append(sum(1 for _ in container.decode(video=0)))
    assert counts == [3, 3, 3, 3]


def test_default_model_and_refiner_ship_in_the_package(vtest: Path):
    result = _stream(str(vtest), "--no-display", "--max-frames", "3")
    assert result.returncode == 0, result.stderr
    assert "camvid_deeplabv3plus_mnv2_int8.tflite" in result.stderr and "refiner: camvid_refiner_temporal_int8" in result.stderr
    plain = _stream(str(vtest), "--no-display", "--max-frames", "3", "--no-refiner")
    assert plain.returncode == 0 and "refiner: none" in plain.stderr


def test_a_run_ends_when_its_reader_thread_outlives_its_end_marker(small_video: Path, fast_model: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    """A reader thread still alive after the main thread has taken its end marker (a busy machine
    can schedule it so) once left the run waiting forever on an empty queue: hung 1/1 before the
    fix, with the thread made to linger a second after its end."""
    read_all = runner._Reader.run

    def read_all_then_linger(reader: runner._Reader) -> None:
        read_all(reader)
        time.sleep(1.0)

    monkeypatch.setattr(runner._Reader, "run", read_all_then_linger)
    timers = []

    def run() -> None:
        with Pipeline(PipelineOptions(model=fast_model, refiner=None)) as pipeline, \
                VideoFileSource(str(small_video)) as source:
            timers.append(runner.run_stream(source, pipeline, runner.Outputs(), runner.RunLimits(),
                                            threading.Event()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive() and timers[0].frames == 12
