"""The command line as a whole: help, options from the environment, bench, source counters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from segrefine_edge.cli import main
from segrefine_edge.live import LiveSource

CLI = [sys.executable, "-m", "segrefine_edge"]


@pytest.fixture(scope="session")
def fast_model(peers: Path) -> Path:
    return peers / "coral" / "deeplabv3_mnv2_dm05_pascal_quant.tflite"


def test_top_level_help_says_what_train_trains():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    train_line = next(line for line in result.output.splitlines() if line.strip().startswith("train"))
    assert "refiner" in train_line and "segmenter" in train_line


def test_options_come_from_the_environment(vtest: Path, fast_model: Path, tmp_path: Path):
    """A systemd unit sets options through SEGREFINE_EDGE_<COMMAND>_<OPTION> variables."""
    stats = tmp_path / "stats.json"
    env = {"SEGREFINE_EDGE_STREAM_MAX_FRAMES": "3", "SEGREFINE_EDGE_STREAM_MODEL": str(fast_model),
           "SEGREFINE_EDGE_STREAM_STATS_JSON": str(stats), "SEGREFINE_EDGE_STREAM_DISPLAY": "false"}
    result = CliRunner().invoke(main, ["stream", str(vtest)], env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 3 and summary["model"] == str(fast_model)


def test_loop_reports_how_often_it_replayed(small_video: Path, fast_model: Path, tmp_path: Path):
    stats = tmp_path / "stats.json"
    result = CliRunner().invoke(main, ["stream", str(small_video), "-m", str(fast_model), "--no-display", "--loop",
                                       "--max-frames", "30", "--stats-json", str(stats)])
    assert result.exit_code == 0, result.output
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 30 and summary["loops"] == 2 and summary["skipped_frames"] == 0
    assert "replayed the input 2 time(s)" in result.output


def test_a_live_source_hands_over_only_its_newest_frame(vtest: Path):
    """A slow consumer of a live source gets the newest frame, never a queue of stale ones, and
    the frames it skipped are counted."""
    with LiveSource(str(vtest), "test stream") as source:
        first = source.read()
        # the capture thread decodes on meanwhile: wait until it has delivered two more frames (a
        # fixed 0.2 s was once too short on a machine busy with training)
        deadline = time.monotonic() + 10
        while source._index < first.index + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        second = source.read()
        counters = source.counters()
    assert second.index > first.index + 1
    assert counters["dropped_frames"] == second.index - 1     # every frame not handed over


class _ThreadThatRunsFirst(threading.Thread):
    """A thread whose ``start()`` returns only once it has run to its end: the scheduling a busy
    machine can give a capture thread, which then delivers frames before its starter's next line."""

    def start(self) -> None:
        self.run()


def test_a_live_source_keeps_frames_its_capture_thread_delivers_before_the_constructor_goes_on(
        small_video: Path, monkeypatch: pytest.MonkeyPatch):
    """(In one full run on a loaded machine the capture thread delivered its first frame before the
    source had recorded the connection: the thread died of an AttributeError and the source
    reported "opened but gave no frame". Failed 1/1 this way before the fix.)"""
    monkeypatch.setattr(threading, "Thread", _ThreadThatRunsFirst)
    with LiveSource(str(small_video), "test stream") as source:
        newest = source.read()
    assert newest is not None and newest.index == 11 and newest.image.shape == (48, 64, 3)


def test_bench_times_two_models_in_one_run_and_writes_json(fast_model: Path, cityscapes_model: Path,
                                                          tmp_path: Path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", str(fast_model), "--vs", str(cityscapes_model), "--warmup", "1",
                                       "--runs", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [Path(r["model"]).name for r in report["results"]] == [fast_model.name, cityscapes_model.name]
    assert all(r["median_ms"] > 0 for r in report["results"])
    ratio = report["ratios"][0]["ratio"]
    assert ratio == pytest.approx(report["results"][1]["median_ms"] / report["results"][0]["median_ms"])
    assert f"{ratio:.2f}x" in result.output


def test_bench_refuses_an_unwritable_json_before_timing(fast_model: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["bench", str(fast_model), "--runs", "1", "--json", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output and "median" not in result.output


def test_the_library_leaves_its_hosts_streams_alone():
    """LiteRT's GPU environment used to be torn down with stdout and stderr sent to /dev/null at
    exit: a host program's own exit handlers must still be heard."""
    pytest.importorskip("ai_edge_litert")
    code = ("import atexit\n"
            "atexit.register(lambda: print('host still speaks'))\n"
            "from segrefine_edge import litert_gpu\n"
            "litert_gpu._shared_environment()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "host still speaks" in result.stdout


def test_status_line_shows_frames_fps_and_eta_on_a_terminal_only():
    import io

    from segrefine_edge.cli.progress import StatusLine, format_status
    from segrefine_edge.timing import StageTimer

    assert format_status(120, 20.0, 800) == "120/800 frames (15%)  20.0 FPS  ETA 0:34"
    assert format_status(120, 20.0, None) == "120 frames  20.0 FPS"

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    timer = StageTimer()
    for stream, expect_output in ((Terminal(), True), (io.StringIO(), False)):
        with StatusLine(timer, 10, enabled=True, stream=stream):
            timer.frame_done()
            time.sleep(0.7)
        assert ("/10 frames" in stream.getvalue()) is expect_output
    quiet = Terminal()
    with StatusLine(timer, 10, enabled=False, stream=quiet):
        time.sleep(0.7)
    assert quiet.getvalue() == ""


def test_quiet_stream_prints_the_summary_only(small_video: Path, fast_model: Path):
    loud = CliRunner().invoke(main, ["stream", str(small_video), "-m", str(fast_model), "--no-display"])
    quiet = CliRunner().invoke(main, ["stream", str(small_video), "-m", str(fast_model), "--no-display", "--quiet"])
    assert loud.exit_code == quiet.exit_code == 0
    assert "source" in loud.output and "source" not in quiet.output
    assert "12 frames" in quiet.output


def test_bench_times_the_whole_pipeline_on_real_frames(small_video: Path, fast_model: Path, tmp_path: Path):
    out = tmp_path / "pipeline.json"
    result = CliRunner().invoke(main, ["bench", str(fast_model), "--frames", str(small_video), "--refiner", "none",
                                       "--warmup", "2", "--runs", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["pipelines"][0]
    assert report["frames"] == 5 and fast_model.name in report["pipeline"]
    assert {"preprocess", "segment", "refine", "postprocess"} == set(report["stages"])
    assert report["frame_p50_ms"] >= report["stages"]["segment"]["p50_ms"]


def test_bench_times_keyframe_settings_side_by_side(vtest: Path, tmp_path: Path):
    """``bench --frames`` with two keyframe settings: one report each, the share of timed frames the
    segmenter ran on (every other frame with 2, on a clip whose motion the flow follows)."""
    out = tmp_path / "keyframes.json"
    result = CliRunner().invoke(main, ["bench", "--frames", str(vtest), "--keyframes", "1", "--keyframes", "2",
                                       "--warmup", "1", "--runs", "8", "--json", str(out)])
    assert result.exit_code == 0, result.output
    every, second = json.loads(out.read_text())["pipelines"]
    assert (every["keyframes"], every["keyframe_share"]) == ("1", 1.0)
    assert (second["keyframes"], second["keyframe_share"]) == ("2", 0.5)
    assert "keyframes 2: 8 frames" in result.output and "50% segmented" in result.output
    no_frames = CliRunner().invoke(main, ["bench", "--keyframes", "auto"])
    assert no_frames.exit_code == 2 and "pass --frames" in no_frames.output


def test_bench_on_a_clip_no_longer_than_its_warmup_says_so(small_video: Path, fast_model: Path):
    result = CliRunner().invoke(main, ["bench", str(fast_model), "--frames", str(small_video), "--refiner", "none",
                                       "--warmup", "12", "--runs", "2"])
    assert result.exit_code == 2 and "no frames past the 12 of --warmup" in result.output, result.output


def test_counter_reports_on_a_terminal_and_is_absent_otherwise():
    import io

    from segrefine_edge.cli.progress import counter

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    report = counter(True, screen)
    for done in (1, 2):
        report("calibrating", done, 2)
    assert screen.getvalue() == "\rcalibrating 1/2\rcalibrating 2/2\n"
    assert counter(True, io.StringIO()) is None and counter(False, Terminal()) is None


def test_a_camera_password_never_reaches_the_terminal_and_the_url_can_come_from_the_environment():
    """A service keeps the URL in its environment file (ps shows command lines to every user)."""
    env = {**os.environ, "SEGREFINE_EDGE_STREAM_INPUT": "rtsp://admin:s3cretpw@127.0.0.1:1/x"}
    result = subprocess.run([*CLI, "stream", "--no-display"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2 and "rtsp://***@127.0.0.1:1/x could not be opened" in result.stderr
    assert "s3cretpw" not in result.stderr + result.stdout


def test_a_bad_value_from_the_environment_is_named_as_the_variable(vtest: Path):
    result = CliRunner().invoke(main, ["stream", str(vtest)], env={"SEGREFINE_EDGE_STREAM_MAX_FRAMES": "abc"})
    assert result.exit_code == 2 and "from the environment variable SEGREFINE_EDGE_STREAM_MAX_FRAMES" in result.output
    typed = CliRunner().invoke(main, ["stream", str(vtest), "--max-frames", "abc"],
                               env={"SEGREFINE_EDGE_STREAM_MAX_FRAMES": "3"})
    assert typed.exit_code == 2 and "environment" not in typed.output
