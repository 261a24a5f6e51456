"""`segrefine-edge stream`: segment a camera, video, network stream or images, live."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone

import click

from segrefine_edge.cli.options import (
    FiniteRange,
    contract_options,
    contract_overrides,
    fit_option,
    keyframes_option,
    runtime_options,
    temporal_blend_option,
)
from segrefine_edge.cli.progress import StatusLine
from segrefine_edge.errors import SourceError
from segrefine_edge.live import LivePolicy
from segrefine_edge.pipeline import DEFAULT_REFINER, Pipeline, PipelineOptions
from segrefine_edge.render import VIEWS, Renderer, RenderOptions
from segrefine_edge.runner import Outputs, RunLimits, run_stream
from segrefine_edge.sinks import SinkContext, expand_start, open_sink
from segrefine_edge.sinks.display import display_available
from segrefine_edge.sources import LoopingSource, open_source, redact
from segrefine_edge.timing import StageTimer, format_summary


def _source_uri(input_uri: str | None, camera: int | None, video: str | None) -> str:
    given = [v for v in (input_uri, None if camera is None else str(camera), video) if v is not None]
    if len(given) != 1:
        raise SourceError("give exactly one input: INPUT (file, folder, glob, URL), --camera N or --video PATH")
    return given[0]


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal) end the run cleanly, outputs closed; the
    signals received are collected, so the command can exit 128 + signal once all is written.
    A signal ignored when the command started stays ignored, as POSIX tools leave it: ``nohup``
    ignores SIGHUP so a closed terminal does not end the run, and a shell starts a script's
    background job with SIGINT ignored so the terminal's Ctrl-C does not reach it."""
    received: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: handler for sig in STOP_SIGNALS if (handler := signal.getsignal(sig)) != signal.SIG_IGN}
    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _stopped_while_starting(received: list[int]) -> Iterator[None]:
    """A stop signal before the first frame (loading the models, connecting to a live source)
    ends the command as a stop while running does, with 128 + the signal and one line; nothing
    was opened to write yet. A live source's wait ends in SourceError once a signal set the stop
    event; a file source opens regardless, and the signal is seen here afterwards."""
    try:
        yield
    except SourceError:
        if not received:
            raise
    if received:
        name = signal.Signals(received[0]).name
        click.echo(f"interrupted by {name} before the first frame; nothing was written", err=True)
        click.get_current_context().exit(128 + received[0])


def _class_indices(pipeline: Pipeline, names: tuple[str, ...]) -> set[int]:
    return {pipeline.contract.class_index(n.strip()) for item in names for n in item.split(",") if n.strip()}


@click.command()
@click.argument("input_uri", metavar="[INPUT]", required=False, envvar="SEGREFINE_EDGE_STREAM_INPUT")
@click.option("--camera", type=int, default=None, help="Camera index (live: the newest frame wins).")
@click.option("--video", type=str, default=None, help="Video file (every frame, in order).")
@click.option("--model", "-m", default=None, help="Segmenter .tflite (default: the shipped CamVid model).")
@click.option("--refiner", default=None, help="Refiner .tflite or 'guided-filter' (default: the shipped refiner, "
              "with the default model; none with another --model).")
@click.option("--no-refiner", is_flag=True, help="Switch the refine stage off (identity).")
@temporal_blend_option
@keyframes_option
@fit_option
@runtime_options
@contract_options
@click.option("--display/--no-display", default=None, help="Show a window (default: when a display exists).")
@click.option("--out", default=None, help="Write the rendered view to this video (.mp4/.avi). In --out, --masks "
              "and --stats-json, {start} becomes the start time, so a restarted service never writes over a file.")
@click.option("--segment-minutes", type=FiniteRange(0, min_open=True), default=None,
              help="Split --out into files of this many minutes of video (NAME-0001.mp4, NAME-0002.mp4, ...), "
                   "for a service that records for weeks.")
@click.option("--masks", default=None, help="Write a palette PNG of class indices per frame here.")
@click.option("--view", type=click.Choice(VIEWS), default="overlay", show_default=True)
@click.option("--alpha", type=FiniteRange(0, 1), default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--legend/--no-legend", default=True, show_default=True)
@click.option("--hud/--no-hud", default=True, show_default=True, help="FPS and per-stage ms on the view.")
@click.option("--classes", multiple=True, help="Only colour these classes (names or indices, comma-separated).")
@click.option("--ignore-class", multiple=True, help="Never colour this class (repeatable).")
@click.option("--loop", is_flag=True, help="Replay a video file or image folder from the start when it ends.")
@click.option("--max-frames", type=click.IntRange(1), default=None, help="Stop after this many frames.")
@click.option("--duration", type=FiniteRange(0, min_open=True), default=None, help="Stop after this many seconds.")
@click.option("--stats-json", default=None, help="Write frames, FPS and per-stage p50/p95 as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No start line and no progress line; the summary only.")
@click.option("--reconnect", type=click.IntRange(0), default=0, show_default=True,
              help="Live sources: reconnect this many times after the stream ends or stalls (backoff 1-30 s); "
                   "0: an end or stall is an error.")
@click.option("--open-timeout", type=FiniteRange(0, min_open=True), default=10.0, show_default=True,
              help="Live sources: seconds to wait for the first frame.")
@click.option("--stall-timeout", type=FiniteRange(0, min_open=True), default=5.0, show_default=True,
              help="Live sources: seconds without a frame before the stream counts as stalled.")
def stream(input_uri, camera, video, model, refiner, no_refiner, temporal_blend, keyframes, fit, runtime, delegate, threads, labels, palette,
           input_range, color_order, output_kind, display, out, segment_minutes, masks, view, alpha, legend, hud,
           classes, ignore_class, loop, max_frames, duration, stats_json, quiet, reconnect, open_timeout,
           stall_timeout) -> None:
    """Segment INPUT (a video file, image folder or glob, rtsp/http URL), --camera N or --video PATH.

    Ends with a summary of frames, FPS and p50/p95 per stage. Ctrl-C, SIGTERM or SIGHUP stop
    cleanly: the video stays playable, every mask written so far is complete, the stats are
    written; the exit code is then 128 + the signal (130, 143, 129).
    """
    uri = _source_uri(input_uri, camera, video)
    started = datetime.now(timezone.utc)
    out, masks, stats_json = (expand_start(spec, started) for spec in (out, masks, stats_json))
    options = PipelineOptions(model=model, refiner="none" if no_refiner else (refiner or DEFAULT_REFINER),
                              mode="video", runtime=runtime, delegate=delegate, threads=threads,
                              temporal_blend=temporal_blend, keyframes=keyframes, fit=fit,
                              contract_overrides=contract_overrides(labels, palette, input_range,
                                                                    color_order, output_kind))
    policy = LivePolicy(open_timeout=open_timeout, stall_timeout=stall_timeout, reconnects=reconnect)
    # The stop handlers cover loading and connecting too: a signal ends the wait for a live source
    # at once and exits as a stop while running does
    stop = threading.Event()
    with _stop_on_signals(stop) as received, ExitStack() as opened:
        with _stopped_while_starting(received):
            pipeline = opened.enter_context(Pipeline(options))
            source = opened.enter_context(LoopingSource(uri) if loop else open_source(uri, policy, stop))
        if source.live:
            pipeline.mode = "live"
        contract = pipeline.contract
        shown = _class_indices(pipeline, classes)
        hidden = _class_indices(pipeline, ignore_class)
        if shown:
            hidden |= set(range(max(contract.num_classes, 256))) - shown
        renderer = Renderer(contract.labels, contract.palette_array(),
                            RenderOptions(view=view, alpha=alpha, legend=legend, hud=hud, hidden=hidden))
        timer = StageTimer()

        def summary() -> dict:
            return {**timer.summary(), **source.counters(), "keyframe_share": pipeline.keyframe_share(),
                    "model": str(pipeline.segmenter.backend.path),
                    "backend": pipeline.segmenter.backend.describe(), "refiner": pipeline.refiner.name}

        context = SinkContext(source.fps, source.size, renderer.output_size(source.size), contract.palette_array(),
                              contract.labels, summary, tuple(source.inputs()),
                              segment_minutes * 60 if segment_minutes else None)
        wanted = [(out, "video"), (masks, "masks"), (stats_json, "stats"),
                  ("display" if (display_available() if display is None else display) else None, "display")]
        outputs = Outputs(renderer=renderer, hud=hud)
        try:
            outputs.sinks = [open_sink(spec, context, kind) for spec, kind in wanted if spec]
        except BaseException:
            outputs.close()
            raise
        if not quiet:
            click.echo(f"{pipeline.describe()}; source {redact(uri)} ({source.size[0]}x{source.size[1]}, "
                       f"{source.fps:.1f} fps{', live' if source.live else ''})", err=True)
        total = None if loop else min(filter(None, (source.length, max_frames)), default=None)
        with StatusLine(timer, total, enabled=not quiet):
            run_stream(source, pipeline, outputs, RunLimits(max_frames, duration), stop, timer)
        final = summary()
    click.echo(format_summary(final))
    if final.get("declared_frames"):
        click.echo(f"the input ended after {final['frames'] + final['skipped_frames']} of the "
                   f"{final['declared_frames']} frames its container declares: the file may be truncated", err=True)
    if final.get("skipped_files"):
        click.echo(f"unreadable, skipped: {', '.join(final['skipped_files'])}", err=True)
    notes = {"skipped_frames": "skipped {} undecodable frame(s)",
             "dropped_frames": "dropped {} stale frame(s): a live source hands over only its newest frame",
             "loops": "replayed the input {} time(s)",
             "reconnects": "reconnected to the stream {} time(s)"}
    for key, note in notes.items():
        if final.get(key):
            click.echo(note.format(final[key]), err=True)
    sys.stdout.flush()
    if received:
        name = signal.Signals(received[0]).name
        click.echo(f"interrupted by {name} after {final['frames']} frames; everything processed was written", err=True)
        click.get_current_context().exit(128 + received[0])
