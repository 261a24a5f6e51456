"""The refinement stage: takes the frame and the segmenter's scores, returns better scores.

The stage exists from day one: without a refiner model it is the identity, so the frame
path, its timings and the CLI keep one shape whether or not a refiner is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from segrefine_edge.backend import open_backend
from segrefine_edge.contract import resolve_contract
from segrefine_edge.errors import ModelError
from segrefine_edge.motion import FlowTracker, pull_back
from segrefine_edge.segmenter import ScoreMap


class Refiner(Protocol):
    name: str

    def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
        """Return refined scores (same classes) for one frame."""

    def reset(self) -> None:
        """Forget earlier frames: the next frame starts a new sequence."""


class _Stateless:
    """For refiners that look at one frame at a time: nothing to forget."""

    def reset(self) -> None:
        return None


class IdentityRefiner(_Stateless):
    """No refinement: scores pass through untouched (and cost nothing)."""

    name = "none"

    def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
        return scores


class GuidedFilterRefiner(_Stateless):
    """The classical cheap refinement (He et al.'s guided filter, as MediaPipe recommends for
    its masks): each class probability is filtered with the frame's grey image as the guide,
    so probability edges snap to image edges. No model; the ablation's baseline."""

    name = "guided-filter"

    def __init__(self, radius: int = 4, eps: float = 1e-3, working_width: int = 240) -> None:
        self.radius, self.eps, self.working_width = radius, eps, working_width

    def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
        h, w = frame_bgr.shape[:2]
        if w > self.working_width:
            h, w = round(h * self.working_width / w), self.working_width
        guide = cv2.cvtColor(cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        guide = guide.astype(np.float32) / 255.0
        probs = cv2.resize(scores.probabilities(), (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        size = (2 * self.radius + 1, 2 * self.radius + 1)

        def box(x: np.ndarray) -> np.ndarray:
            out = cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)
            return out.reshape(x.shape)

        mean_i = box(guide)
        var_i = box(guide * guide) - mean_i * mean_i
        mean_p = box(probs)
        cov_ip = box(guide[..., None] * probs) - mean_i[..., None] * mean_p
        a = cov_ip / (var_i[..., None] + self.eps)
        b = mean_p - a * mean_i[..., None]
        return ScoreMap("probabilities", box(a) * guide[..., None] + box(b))


class TFLiteRefiner:
    """A refiner model (contract role 'refiner') with inputs ``image`` and ``probabilities``
    or ``logits`` (the segmenter's, dequantised), and for a temporal refiner ``previous``.

    Its contract's ``refiner_inputs`` names the order of its input tensors; ``image`` is fed
    like a segmenter's input, the scores as HxWxC floats at the refiner's input size.
    Its output is logits over the same classes. A temporal refiner gets its own last output
    as probabilities in ``previous``, pulled to the current frame along DIS optical flow
    (about 1 ms at the refiner's size); on a sequence's first frame it gets the segmenter's
    probabilities instead, as in training.
    """

    def __init__(self, path: str | Path, runtime: str = "auto", delegate: str = "auto", threads: int = 2) -> None:
        self.backend = open_backend(path, runtime, delegate, threads)
        self.contract = resolve_contract(self.backend)
        if self.contract.role != "refiner":
            raise ModelError(f"{Path(path).name} is a {self.contract.role} model, not a refiner; "
                             "pass a refiner to --refiner or leave it out")
        self.order = self.contract.refiner_inputs or ["image", "probabilities"]
        scores = {"probabilities", "logits"} & set(self.order)
        if "image" not in self.order or len(scores) != 1 or not set(self.order) <= {"image", "previous", *scores}:
            raise ModelError(f"refiner inputs {self.order} are not supported; expected image, "
                             "probabilities or logits, and optionally previous")
        self.name = Path(path).stem
        self.hw = self.contract.input_hw
        self.temporal = "previous" in self.order
        self._previous: np.ndarray | None = None
        self._motion = FlowTracker(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def reset(self) -> None:
        self._previous = None
        self._motion.reset()

    def _aligned_previous(self, image_rgb: np.ndarray, current: np.ndarray) -> np.ndarray:
        """The last refined probabilities moved to this frame, or ``current`` when there are none."""
        flow = self._motion.flow_to_previous(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        if flow is None or self._previous is None:
            return current
        return pull_back(self._previous, flow, cv2.INTER_LINEAR)[0]

    def _tensor(self, position: int, value: np.ndarray) -> np.ndarray:
        info = self.backend.inputs[position]
        if info.quantized:
            iinfo = np.iinfo(info.dtype)
            return np.clip(np.round(value / info.scale + info.zero_point), iinfo.min, iinfo.max).astype(info.dtype)[None]
        return value.astype(np.float32)[None]

    def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
        h, w = self.hw
        rgb = cv2.cvtColor(cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        image = rgb.astype(np.float32) * self.contract.input_scale + self.contract.input_offset
        scores_in = scores.probabilities() if "probabilities" in self.order else scores.real()
        resized = cv2.resize(scores_in, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        feeds = {"image": image, "probabilities": resized, "logits": resized}
        if self.temporal:
            feeds["previous"] = self._aligned_previous(
                rgb, resized if "probabilities" in self.order else ScoreMap("logits", resized).probabilities())
        for position, name in enumerate(self.order):
            self.backend.set_input(position, self._tensor(position, feeds[name]))
        self.backend.invoke()
        out = self.backend.output(0)[0]
        info = self.backend.outputs[0]
        refined = ScoreMap("logits", out, info.scale if info.quantized else 0.0, info.zero_point if info.quantized else 0)
        if self.temporal:
            self._previous = refined.probabilities()
        return refined


def open_refiner(spec: str | None, runtime: str = "auto", delegate: str = "auto", threads: int = 2) -> Refiner:
    """The refine stage that ``--refiner`` names: none, 'guided-filter', or a refiner .tflite."""
    if not spec or spec == "none":
        return IdentityRefiner()
    if spec == GuidedFilterRefiner.name:
        return GuidedFilterRefiner()
    return TFLiteRefiner(spec, runtime, delegate, threads)
