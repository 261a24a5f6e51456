"""The fully connected CRF (Kraehenbuehl and Koltun, 2011; DeepLab v1/v2's refiner) on the segmenter's
outputs, on the drives protocol runs left out.

Kept as the record behind docs/experiments.md "2026-12-07: a dense CRF on drives never seen". No
model is trained: the CRF's pairwise terms know only the image's colours and positions, so they cannot
have learnt the training drives. Needs pydensecrf2 (built from source; `pip install pydensecrf2`).
Scored as refiner_gates.py scores (the same runs, the same "segmenter" figures):

    python docs/results/refiner_crf.py /tmp/rfull/rs0_*_s0 --json docs/results/2026-12-07-refiner-crf.json
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pydensecrf.densecrf as dcrf
from refiner_gates import Frame, main

from segrefine_edge.scores import ScoreMap


def _dense_crf(bilateral_xy: float, bilateral_rgb: float, bilateral_weight: float,
               steps: int = 5) -> Callable[[Frame], np.ndarray]:
    """Mean-field inference at the frame's full size; a smoothness kernel of 3 px, weight 3 (the
    DeepLab defaults), and an appearance kernel of the given reach in pixels and colour."""
    def crf(frame: Frame) -> np.ndarray:
        h, w = frame.image_bgr.shape[:2]
        logits = cv2.resize(frame.logits, (w, h), interpolation=cv2.INTER_LINEAR)
        probs = ScoreMap("logits", logits).probabilities()
        num_classes = probs.shape[-1]
        field = dcrf.DenseCRF2D(w, h, num_classes)
        unary = -np.log(np.clip(probs, 1e-6, 1.0)).reshape(-1, num_classes).T
        field.setUnaryEnergy(np.ascontiguousarray(unary, np.float32))
        field.addPairwiseGaussian(sxy=3, compat=3)
        rgb = np.ascontiguousarray(frame.image_bgr[..., ::-1])
        field.addPairwiseBilateral(sxy=bilateral_xy, srgb=bilateral_rgb, rgbim=rgb, compat=bilateral_weight)
        marginals = np.asarray(field.inference(steps), np.float32).T.reshape(h, w, num_classes)
        return np.log(np.clip(marginals, 1e-6, 1.0))
    return crf


VARIANTS: dict[str, Callable[[Frame], np.ndarray]] = {
    "segmenter": lambda f: f.logits,
    "refined": lambda f: f.refined,
    **{f"dense CRF xy {xy} rgb {rgb} weight {wt}": _dense_crf(xy, rgb, wt)
       for xy, rgb, wt in ((80, 13, 10), (50, 5, 4), (30, 10, 3), (10, 10, 3))},
}


if __name__ == "__main__":
    main(__doc__.splitlines()[0], VARIANTS)
