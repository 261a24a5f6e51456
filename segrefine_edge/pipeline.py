"""The public pipeline: one object that turns BGR frames into class labels.

Built from a ``PipelineOptions`` the way MediaPipe Tasks build a segmenter: the options name
the models, the runtime and a running mode, creation checks that segmenter and refiner fit
together, and ``segment(frame)`` returns a ``SegmentationResult``::

    from segrefine_edge import Pipeline, PipelineOptions

    with Pipeline(PipelineOptions(mode="video")) as pipeline:
        result = pipeline.segment(frame_bgr)
        print(result.labels.shape, result.timings_ms)

Modes: ``image`` (unrelated stills: nothing is carried from one frame to the next, and the default
runs no refiner), ``video`` (ordered frames of one clip: a temporal refiner follows them), ``live``
(as video; the source, not the pipeline, drops stale frames so the newest one wins).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.contract import ModelContract
from segrefine_edge.errors import ModelError, PipelineError
from segrefine_edge.models import default_model_path, default_refiner_path
from segrefine_edge.postprocess import labels_at
from segrefine_edge.preprocess import FITS, Placement, choose_fit, letterbox
from segrefine_edge.refiner import TEMPORAL_BLEND, IdentityRefiner, Refiner, TFLiteRefiner, open_refiner
from segrefine_edge.scores import ScoreMap
from segrefine_edge.segmenter import Segmenter

MODES = ("image", "video", "live")
DEFAULT_REFINER = "default"   # video and live: the refiner trained behind the shipped segmenter; else none
STAGES = ("preprocess", "segment", "refine", "postprocess")
# keyframes='auto': a frame is a keyframe when the flow follows less of it than this, or when
# this many frames have passed since the last one
KEYFRAME_FOLLOWED = 0.97
KEYFRAME_MAX_INTERVAL = 4


@dataclass(frozen=True)
class PipelineOptions:
    """What to run and how.

    ``model``: a segmenter ``.tflite`` (None: the shipped CamVid model). ``refiner``: a refiner
    ``.tflite``, ``'guided-filter'``, ``'none'``/None, or ``'default'``, which means the shipped
    temporal refiner with the shipped model in video and live mode, and no refiner in image mode or
    with any other model (a refiner only fits the outputs of the segmenter it was trained behind;
    on a single still no refiner recipe tried raised accuracy on drives it never saw, and what the
    temporal one buys, steadiness from frame to frame, needs frames). ``contract_overrides``: model-contract
    fields for third-party models (labels, palette, input_range, color_order, output_kind).
    ``fit``: how a frame of another shape meets the model's input: ``stretch`` (resize to it),
    ``pad`` (keep the aspect ratio, mid-grey around; labels are cropped back to the frame), or
    ``auto`` (pad when the aspect ratios differ by more than 10%).
    """

    model: str | Path | None = None
    refiner: str | Path | None = DEFAULT_REFINER
    mode: str = "video"
    runtime: str = "auto"
    delegate: str = "auto"
    threads: int = 2
    temporal_blend: float = TEMPORAL_BLEND
    contract_overrides: Mapping[str, Any] = field(default_factory=dict)
    keyframes: int | str = 1
    fit: str = "auto"


@dataclass
class SegmentationResult:
    """One frame's result.

    ``labels``: class indices at the frame's size (uint8; uint16 past 255 classes).
    ``scores``: the refined scores at model resolution (see ScoreMap for quantised values).
    ``timings_ms``: milliseconds per stage (preprocess, segment, refine, postprocess).
    """

    labels: np.ndarray
    scores: ScoreMap
    timings_ms: dict[str, float]
    keyframe: bool = True

    def confidence(self) -> np.ndarray:
        """Top-1 class probability per pixel at model resolution (float32, 0-1); all ones for
        a model that outputs labels only."""
        if self.scores.kind == "labels":
            return np.ones(self.scores.values.shape[:2], np.float32)
        return self.scores.probabilities().max(axis=-1)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise PipelineError(f"mode '{mode}' is not one of {', '.join(MODES)}: image for unrelated stills, "
                            "video for the ordered frames of a clip, live for a camera or stream")


def _check_keyframes(keyframes: int | str, refiner: Refiner, mode: str) -> int | str:
    """'auto' or a whole number 1 or more; anything but 1 needs a temporal refiner and ordered frames."""
    if keyframes != "auto":
        try:
            keyframes = int(keyframes)
        except (TypeError, ValueError):
            keyframes = 0
        if keyframes < 1:
            raise PipelineError("keyframes must be 'auto' or a whole number 1 or more (1: the segmenter on every frame)")
    if keyframes != 1 and (mode == "image" or not getattr(refiner, "temporal", False)):
        raise PipelineError("keyframes other than 1 need ordered frames (video or live mode) and a temporal refiner, "
                            "which carries the scores between keyframes")
    return keyframes


def check_segmenter(segmenter: Segmenter) -> None:
    """Refuse models that cannot be a segmenter: a refiner, or one whose output is no per-pixel map."""
    name = segmenter.backend.path.name
    if segmenter.contract.role == "refiner":
        raise ModelError(f"{name} is a refiner (its contract says role 'refiner'); pass it as --refiner, "
                         "and a segmenter as --model")
    shape = segmenter.output.shape
    in_h, in_w = segmenter.contract.input_hw
    spatial = shape[1:3] if len(shape) >= 3 else ()
    if len(spatial) < 2 or min(spatial) < 2 or spatial[0] * 32 < in_h or spatial[1] * 32 < in_w:
        kind = "a classifier" if len(shape) == 2 else "a detector or another non-dense model"
        raise ModelError(f"{name} outputs {list(shape)} for a {in_w}x{in_h} input, which is no per-pixel map "
                         f"(it looks like {kind}); pass a segmentation model")


def check_fit(segmenter: Segmenter, refiner: Refiner) -> None:
    """Refuse a refiner that cannot read this segmenter's output."""
    if isinstance(refiner, IdentityRefiner):
        return
    contract = segmenter.contract
    if contract.output_kind == "labels":
        raise ModelError(f"{segmenter.backend.path.name} outputs labels only (an argmax); refiner '{refiner.name}' "
                         "needs scores: pass --no-refiner or a model that outputs logits")
    # A TFLite refiner's role was checked when it was opened; its class count is checked here
    refined = refiner.contract.num_classes if isinstance(refiner, TFLiteRefiner) else None
    if refined and refined != contract.num_classes:
        raise ModelError(f"refiner {refiner.backend.path.name} refines {refined} classes but "
                         f"{segmenter.backend.path.name} predicts {contract.num_classes}; use a refiner trained "
                         "behind this segmenter")


def resolve_refiner(options: PipelineOptions) -> str | None:
    """The refiner ``options`` run: a path, 'guided-filter', or None (no refiner); 'default' resolved."""
    spec = options.refiner
    if spec is None or str(spec) == "none":
        return None
    if str(spec) == DEFAULT_REFINER:
        if options.mode == "image":
            return None
        shipped = default_model_path()
        behind_shipped = options.model is None or (shipped is not None and Path(options.model).resolve() == shipped)
        default = default_refiner_path() if behind_shipped else None
        return str(default) if default else None
    return str(spec)


def _model_path(model: str | Path | None) -> str:
    if model:
        return str(model)
    path = default_model_path()
    if path is None:
        raise ModelError("no default model ships in this build; pass --model PATH to a .tflite segmenter")
    return str(path)


class Pipeline:
    """Segment and refine frames; a context manager. See the module docstring for an example."""

    def __init__(self, options: PipelineOptions | None = None) -> None:
        options = options or PipelineOptions()
        _check_mode(options.mode)
        segmenter = Segmenter.open(_model_path(options.model), options.runtime, options.delegate, options.threads,
                                   dict(options.contract_overrides))
        refiner = open_refiner(resolve_refiner(options), options.runtime, options.delegate, options.threads,
                               options.temporal_blend)
        self._setup(segmenter, refiner, options.mode, options.keyframes, options.fit)

    @classmethod
    def from_parts(cls, segmenter: Segmenter, refiner: Refiner | None = None, mode: str = "video",
                   keyframes: int | str = 1, fit: str = "auto") -> Pipeline:
        """A pipeline over models already open (``eval`` runs one segmenter behind several refiners)."""
        _check_mode(mode)
        pipeline = cls.__new__(cls)
        pipeline._setup(segmenter, refiner or IdentityRefiner(), mode, keyframes, fit)
        return pipeline

    def _setup(self, segmenter: Segmenter, refiner: Refiner, mode: str, keyframes: int | str,
               fit: str = "auto") -> None:
        if fit not in FITS:
            raise PipelineError(f"fit '{fit}' is not one of {', '.join(FITS)}")
        self.fit = fit
        check_segmenter(segmenter)
        check_fit(segmenter, refiner)
        self.keyframes = _check_keyframes(keyframes, refiner, mode)
        self.segmenter, self.refiner, self.mode = segmenter, refiner, mode
        self._last_timestamp: float | None = None
        self._closed = False
        self._since_keyframe = 0
        self.frames_run = self.keyframes_run = 0

    @property
    def contract(self) -> ModelContract:
        """The segmenter's contract: class names, palette, input size."""
        return self.segmenter.contract

    def describe(self) -> str:
        """One line: model, runtime/delegate/threads, refiner, mode."""
        return (f"{self.segmenter.backend.path.name} on {self.segmenter.backend.describe()}, input "
                f"{self.contract.input_hw[1]}x{self.contract.input_hw[0]}, refiner: {self.refiner.name}, "
                f"mode: {self.mode}")

    def reset(self) -> None:
        """Start a new sequence: a temporal refiner forgets its previous mask."""
        self.refiner.reset()
        self._last_timestamp = None
        self._since_keyframe = 0

    def keyframe_share(self) -> float | None:
        """The share of frames the segmenter ran on so far (None before the first)."""
        return self.keyframes_run / self.frames_run if self.frames_run else None

    def _keyframe_due(self, followed: float | None) -> bool:
        """Whether the segmenter runs on this frame (keyframes other than 1): after a cut, at the
        interval, or for 'auto' when the flow follows too little of the frame."""
        if followed is None:
            return True
        interval = KEYFRAME_MAX_INTERVAL if self.keyframes == "auto" else int(self.keyframes)
        return self._since_keyframe + 1 >= interval or (self.keyframes == "auto" and followed < KEYFRAME_FOLLOWED)

    def segment(self, frame_bgr: np.ndarray, timestamp: float | None = None) -> SegmentationResult:
        """Labels for one BGR uint8 frame (HxWx3, any size).

        ``timestamp`` (seconds, optional in video and live mode) must grow from frame to frame;
        image mode takes none. Raises PipelineError on misuse.
        """
        self._check_call(frame_bgr, timestamp)
        if self.mode == "image":
            self.refiner.reset()
        clock = time.perf_counter
        t0 = clock()
        placement: Placement | None = None
        if choose_fit(frame_bgr.shape[:2], self.segmenter.contract.input_hw, self.fit) == "pad":
            # the refiner sees the padded frame too: its scores cover the same canvas
            resized, placement = letterbox(frame_bgr, self.segmenter.contract.input_hw)
            for_refiner = resized
        else:
            resized = self.segmenter.resize(frame_bgr)
            # The segmenter's copy of the frame where it is big enough (a whole-factor shrink of it
            # costs 0.04 ms against 1.4 ms from a 768x576 frame)
            need_h, need_w = self.refiner.frame_hw
            for_refiner = resized if resized.shape[0] >= need_h and resized.shape[1] >= need_w else frame_bgr
        # every frame is a keyframe by default: its tensor is preprocessing; with keyframes it is
        # made only for the frames the segmenter runs on
        tensor = self.segmenter.to_tensor(resized) if self.keyframes == 1 else None
        t1 = clock()
        carried = None
        if self.keyframes != 1:
            followed = self.refiner.follow(for_refiner)
            carried = None if self._keyframe_due(followed) else self.refiner.propagated_scores()
        t2 = clock()
        if carried is None:
            scores = self.segmenter.invoke(self.segmenter.to_tensor(resized) if tensor is None else tensor)
            self._since_keyframe = 0
            self.keyframes_run += 1
        else:
            scores = carried
            self._since_keyframe += 1
        self.frames_run += 1
        t3 = clock()
        scores = self.refiner.refine(for_refiner, scores)
        if placement is not None:
            scores = ScoreMap(scores.kind, placement.crop(scores.values), scores.scale, scores.zero_point)
        t4 = clock()
        labels = labels_at(scores, (frame_bgr.shape[1], frame_bgr.shape[0]))
        t5 = clock()
        spans = (t1 - t0, t3 - t2, (t2 - t1) + (t4 - t3), t5 - t4)   # following the flow counts as refining
        timings = {stage: span * 1000.0 for stage, span in zip(STAGES, spans, strict=True)}
        return SegmentationResult(labels, scores, timings, keyframe=carried is None)

    def _check_call(self, frame: np.ndarray, timestamp: float | None) -> None:
        if self._closed:
            raise PipelineError("this pipeline is closed; create a new one")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise PipelineError(f"a frame must be a BGR uint8 array of shape (height, width, 3); got {got}")
        if timestamp is None:
            return
        if self.mode == "image":
            raise PipelineError("image mode takes no timestamps: its frames are unrelated; use mode='video' for a clip")
        if self._last_timestamp is not None and timestamp <= self._last_timestamp:
            raise PipelineError(f"timestamp {timestamp} does not follow {self._last_timestamp}: frames of a video must "
                                "come in order (call reset() to start a new clip)")
        self._last_timestamp = timestamp

    def close(self) -> None:
        """End the pipeline: later calls raise PipelineError, and a temporal refiner forgets its
        mask. The interpreters are freed with the object (LiteRT has no explicit release)."""
        self.refiner.reset()
        self._closed = True

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
