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
from segrefine_edge.motion import FlowTracker, flow_trust, pull_back
from segrefine_edge.preprocess import resize_image
from segrefine_edge.quant import pixel_mapping, pixels_to_tensor, quantise, to_integers
from segrefine_edge.scores import ScoreMap

# Share of the flow-aligned previous output in a temporal refiner's output. Chosen on CamVid
# val's 0016E5 frames (15 Hz) among 0-0.8: TC rises steadily with it, mIoU holds up to 0.5 and
# falls beyond (0.7: -0.4 points) as moving edges start to lag.
TEMPORAL_BLEND = 0.5
# The gate on the previous mask: grey levels of photometric error the pulled frame may show and
# still count as the same surface, and the share of the frame that must be followed for the
# next frame to continue the sequence (below it: a cut, or frames too far apart; start afresh).
PHOTOMETRIC_TOLERANCE = 6.0
FOLLOWED_TO_CONTINUE = 0.9


class Refiner(Protocol):
    name: str
    # The smallest (height, width) of frame it can be given without losing detail: a smaller
    # copy of the same frame (the segmenter's input) is as good as the original from there.
    frame_hw: tuple[int, int]

    def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
        """Return refined scores (same classes) for one frame, given at any size."""

    def reset(self) -> None:
        """Forget earlier frames: the next frame starts a new sequence."""


class _Stateless:
    """For refiners that look at one frame at a time: nothing to forget."""

    def reset(self) -> None:
        return None


class IdentityRefiner(_Stateless):
    """No refinement: scores pass through untouched (and cost nothing)."""

    name = "none"
    frame_hw = (0, 0)

    def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
        return scores


class GuidedFilterRefiner(_Stateless):
    """The classical cheap refinement (He et al.'s guided filter, as MediaPipe recommends for
    its masks): each class probability is filtered with the frame's grey image as the guide,
    so probability edges snap to image edges. No model; the ablation's baseline."""

    name = "guided-filter"

    def __init__(self, radius: int = 4, eps: float = 1e-3, working_width: int = 240) -> None:
        self.radius, self.eps, self.working_width = radius, eps, working_width
        self.frame_hw = (0, working_width)

    def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
        h, w = frame_bgr.shape[:2]
        if w > self.working_width:
            h, w = round(h * self.working_width / w), self.working_width
        guide = cv2.cvtColor(resize_image(frame_bgr, (h, w)), cv2.COLOR_BGR2GRAY)
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
    like a segmenter's input, the scores as HxWxC values at their input tensor's size (the
    refiner's, or smaller where the model upsamples them itself).
    Its output is logits over the same classes. A temporal refiner gets its own last output
    as probabilities in ``previous``, pulled to the current frame along DIS optical flow
    (about 1 ms at the refiner's size); on a sequence's first frame it gets the segmenter's
    probabilities instead, as in training. Its output is then blended with that pulled
    previous output (``blend`` of it, an exponential moving average along the flow): the
    model decides where the previous mask is wrong, the average removes the frame-to-frame
    jitter that is left. Both are gated per pixel by how well the flow explains the frame
    (``motion.flow_trust``), and a frame the flow cannot follow starts a new sequence, so a cut
    or frames far apart never inherit a stale mask.
    """

    def __init__(self, path: str | Path, runtime: str = "auto", delegate: str = "auto", threads: int = 2,
                 blend: float = TEMPORAL_BLEND) -> None:
        if not 0.0 <= blend < 1.0:
            raise ModelError(f"temporal blend {blend} is outside [0, 1): 0 switches it off, 0.5 is the default")
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
        self.hw = self.frame_hw = self.contract.input_hw
        self.temporal = "previous" in self.order
        self.blend = blend if self.temporal else 0.0
        self._inputs = {name: self.backend.inputs[position] for position, name in enumerate(self.order)}
        self._pixels = pixel_mapping(self.contract, self._inputs["image"])
        self._previous: np.ndarray | None = None      # the last refined probabilities
        self._motion = FlowTracker(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._rgb: np.ndarray | None = None          # the frame followed last, at the refiner's size, RGB
        self._flow: np.ndarray | None = None
        self._followed: tuple[np.ndarray, np.ndarray] | None = None
        self._last_scores: ScoreMap | None = None      # the last scores, real-valued, carried along the flow
        self._followed_this_frame = False             # follow() ran for the frame refine() gets next

    def reset(self) -> None:
        self._previous = self._rgb = self._flow = self._followed = self._last_scores = None
        self._followed_this_frame = False
        self._motion.reset()

    def _tensor(self, name: str, values: np.ndarray) -> np.ndarray:
        """Real float32 values as input ``name``'s tensor values."""
        info = self._inputs[name]
        return quantise(values, info) if info.quantized else values.astype(info.dtype, copy=False)

    def _scores_tensor(self, scores: ScoreMap) -> tuple[np.ndarray, str]:
        """The segmenter's scores as this refiner's input tensor at that tensor's size, and that
        input's name. Quantised at the segmenter's resolution, then resized (if the sizes
        differ): fewer values to quantise, within one quantisation step of the other order
        (next to values beyond the input's calibrated range, which saturate, it can differ more)."""
        name = "probabilities" if "probabilities" in self.order else "logits"
        h, w = self._inputs[name].shape[1:3]
        real = scores.probabilities() if name == "probabilities" else scores.real()
        tensor = self._tensor(name, real)
        if tensor.shape[:2] == (h, w):
            return tensor, name
        shifted = tensor.dtype == np.int8       # OpenCV resizes uint8, not int8
        if shifted:
            tensor = tensor.view(np.uint8) ^ np.uint8(0x80)
        tensor = cv2.resize(tensor, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        return (tensor ^ np.uint8(0x80)).view(np.int8) if shifted else tensor, name

    def follow(self, frame_bgr: np.ndarray) -> float | None:
        """Follow the motion from the last frame to this one (once per frame, before ``refine``):
        the share of the frame the flow explains, or None on a sequence's first frame or when too
        little of it can be followed (a cut, frames too far apart: the frame starts afresh)."""
        h, w = self.hw
        self._rgb = cv2.cvtColor(resize_image(frame_bgr, (h, w)), cv2.COLOR_BGR2RGB)
        self._followed_this_frame = True
        self._followed = self._flow = None
        gray = cv2.cvtColor(self._rgb, cv2.COLOR_RGB2GRAY)
        flow, previous_gray = self._motion.flow_and_previous(gray)
        if flow is None or self._previous is None:
            return None
        trust = flow_trust(gray, previous_gray, flow, PHOTOMETRIC_TOLERANCE)
        share = float(np.mean(trust > 0.5))
        if share < FOLLOWED_TO_CONTINUE:
            return None
        self._flow = flow
        self._followed = (pull_back(self._previous, flow, cv2.INTER_LINEAR)[0], trust[..., None])
        return share

    def propagated_scores(self) -> ScoreMap | None:
        """The last keyframe's segmenter scores carried to this frame along the flow (at their own
        resolution), for a frame the segmenter skips; None when the motion was not followed."""
        if self._flow is None or self._last_scores is None:
            return None
        values = self._last_scores.values
        h, w = values.shape[:2]
        flow = cv2.resize(self._flow, (w, h), interpolation=cv2.INTER_LINEAR)
        flow *= np.float32(w / self._flow.shape[1])
        carried = pull_back(values, flow, cv2.INTER_LINEAR)[0].reshape(values.shape)
        return ScoreMap(self._last_scores.kind, carried)

    def _segmenter_probabilities(self, scores: ScoreMap) -> np.ndarray:
        """What a first frame gets as its previous mask: the segmenter's probabilities (of its
        resized real-valued scores, as in training)."""
        h, w = self.hw
        resized = cv2.resize(scores.values, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        return ScoreMap(scores.kind, resized).probabilities()

    def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
        if self.temporal and not self._followed_this_frame:
            self.follow(frame_bgr)
        self._followed_this_frame = False
        h, w = self.hw
        rgb = self._rgb if self.temporal else cv2.cvtColor(resize_image(frame_bgr, (h, w)), cv2.COLOR_BGR2RGB)
        scores_tensor, scores_name = self._scores_tensor(scores)
        feeds = {"image": pixels_to_tensor(rgb, self._pixels, self._inputs["image"]), scores_name: scores_tensor}
        followed = None
        if self.temporal:
            followed = self._followed
            # dequantised once: the first-frame previous mask, and what a frame the segmenter skips
            # starts from (a keyframe's scores, or the ones carried here)
            self._last_scores = ScoreMap(scores.kind, scores.real().astype(np.float32, copy=False))
            previous = self._segmenter_probabilities(self._last_scores)
            if followed is not None:                 # the pulled mask where the flow holds, else the segmenter's
                aligned, trust = followed
                previous = _lerp(previous, aligned, trust)
            feeds["previous"] = self._tensor("previous", previous)
        for position, name in enumerate(self.order):
            self.backend.set_input(position, feeds[name][None])
        self.backend.invoke()
        out = self.backend.output(0)[0]
        info = self.backend.outputs[0]
        refined = ScoreMap("logits", out, info.scale if info.quantized else 0.0, info.zero_point if info.quantized else 0)
        if not self.temporal:
            return refined
        probabilities = refined.probabilities().astype(np.float32, copy=False)
        if followed is not None and self.blend:
            aligned, trust = followed
            probabilities = _lerp(probabilities, aligned, self.blend * trust)   # none where the flow lost the motion
        self._previous = probabilities
        if not self.blend:
            return refined
        # 8-bit probabilities: the postprocess upsamples integer planes faster than floats
        return ScoreMap("probabilities", to_integers(probabilities, 255.0, 0.0, np.uint8), 1.0 / 255.0, 0)


def _lerp(base: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``base + weight * (target - base)`` in one new array: the per-pixel weight (HxWx1) broadcast
    over the class planes once, not into three temporaries (0.3 ms against 2.3 ms at 176x240x11)."""
    mixed = np.subtract(target, base, dtype=np.float32)
    mixed *= weight
    mixed += base
    return mixed


def open_refiner(spec: str | None, runtime: str = "auto", delegate: str = "auto", threads: int = 2,
                 blend: float = TEMPORAL_BLEND) -> Refiner:
    """The refine stage that ``--refiner`` names: none, 'guided-filter', or a refiner .tflite
    (``blend`` applies to temporal ones)."""
    if not spec or spec == "none":
        return IdentityRefiner()
    if spec == GuidedFilterRefiner.name:
        return GuidedFilterRefiner()
    if not Path(spec).exists():
        raise ModelError(f"refiner {spec} does not exist; pass --refiner a refiner .tflite, 'guided-filter', or "
                         "--no-refiner")
    return TFLiteRefiner(spec, runtime, delegate, threads, blend)
