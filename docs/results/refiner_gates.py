"""Post-hoc gates on protocol refiner runs, and the guided filter, on the drives the runs left out.

Kept as the record behind docs/experiments.md "2026-12-07: gating the refiner's change, and the
guided filter, on drives never seen". Each RUN is a `train refiner --set held_out_sequence=DRIVE`
folder; its cached `inputs/val.npy` holds the fold segmenter's logits on the left-out drive, and
its `best.weights.h5` the refiner it kept. Every variant is scored at the label resolution exactly
as the training loop scores the refiner, so "refined" reproduces the protocol's figure.

    python docs/results/refiner_gates.py /tmp/rfull/rs0_*_s? --json docs/results/2026-12-07-refiner-gates.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from segrefine_edge.datasets import read_class_info
from segrefine_edge.metrics.validation import SplitScorer
from segrefine_edge.refiner import GuidedFilterRefiner
from segrefine_edge.scores import ScoreMap
from segrefine_edge.training.config import apply_overrides
from segrefine_edge.training.data import decode_split
from segrefine_edge.training.refiner_data import refiner_split
from segrefine_edge.training.refiner_loop import RefinerTrainConfig, _training_and_scored_pairs
from segrefine_edge.training.refiner_net import build_generator

THIN = ["Pole", "SignSymbol", "Fence", "Pedestrian", "Bicyclist"]


class Frame:
    """One left-out image: the segmenter's logits (88x120), and at the refiner's 176x240 its refined logits,
    the segmenter's upsampled, their confidence, where either names a thin class, and the truth (void
    kept) for the oracles of refiner_headroom.py."""

    def __init__(self, image_bgr: np.ndarray, logits: np.ndarray, refined: np.ndarray, thin: list[int],
                 truth: np.ndarray) -> None:
        h, w = refined.shape[:2]
        self.image_bgr, self.logits, self.refined, self.truth = image_bgr, logits, refined, truth
        self.thin_classes = thin
        self.base = cv2.resize(logits, (w, h), interpolation=cv2.INTER_LINEAR)

    # computed on first use: only the gates need them, not the oracles or the CRF
    @cached_property
    def confidence(self) -> np.ndarray:
        return ScoreMap("logits", self.base).probabilities().max(-1, keepdims=True)

    @cached_property
    def thin(self) -> np.ndarray:
        named = np.isin(self.base.argmax(-1), self.thin_classes) | np.isin(self.refined.argmax(-1), self.thin_classes)
        return named[..., None]


def _scaled(alpha: float) -> Callable[[Frame], np.ndarray]:
    return lambda f: f.base + alpha * (f.refined - f.base)


def _confident_below(threshold: float) -> Callable[[Frame], np.ndarray]:
    return lambda f: np.where(f.confidence < threshold, f.refined, f.base)


def _guided(radius: int, eps: float, width: int) -> Callable[[Frame], np.ndarray]:
    gf = GuidedFilterRefiner(radius, eps, width)
    return lambda f: gf.refine(f.image_bgr, ScoreMap("logits", f.logits)).values


VARIANTS: dict[str, Callable[[Frame], np.ndarray]] = {
    "segmenter": lambda f: f.logits,
    "refined": lambda f: f.refined,
    **{f"residual x{a}": _scaled(a) for a in (0.25, 0.5, 0.75)},
    **{f"refined where confidence < {t}": _confident_below(t) for t in (0.6, 0.7, 0.8, 0.9, 0.95)},
    "thin classes left alone": lambda f: np.where(f.thin, f.base, f.refined),
    **{f"guided filter r{r} eps {e} width {w}": _guided(r, e, w)
       for r, e, w in ((2, 1e-3, 240), (4, 1e-3, 240), (8, 1e-3, 240), (4, 1e-2, 240), (4, 1e-4, 240),
                       (1, 1e-3, 480), (2, 1e-3, 480), (4, 1e-3, 480), (8, 1e-3, 480), (2, 1e-4, 480),
                       (4, 1e-4, 480), (8, 1e-2, 480))},
}


def score_run(run: Path, variants: dict[str, Callable[[Frame], np.ndarray]]) -> tuple[dict[str, dict], list[str]]:
    """Each of ``variants``' scores on the drive ``run`` left out, and the dataset's class names."""
    saved = json.loads((run / "config.json").read_text())
    config = apply_overrides(RefinerTrainConfig(), [f"{key}={json.dumps(value)}" for key, value in saved.items()
                                                    if key not in ("kind", "version")])
    info = read_class_info(config.data)
    thin = [info.names.index(name) for name in THIN]
    _, left_out = _training_and_scored_pairs(config)
    split = decode_split(left_out, config.model.num_classes, info.void)
    logits = np.load(run / "inputs" / "val.npy").astype(np.float32)
    pairs = refiner_split(split, logits, config.model.input_hw)
    generator = build_generator(config.model)
    generator.load_weights(run / "best.weights.h5")
    scorers = {name: SplitScorer(config.model.num_classes, info.void) for name in variants}
    for i, mask in enumerate(split.masks):
        refined = np.asarray(generator([pairs.images[i][None].astype(np.float32), logits[i][None]],
                                       training=False))[0]
        frame = Frame(cv2.cvtColor(split.images[i], cv2.COLOR_RGB2BGR), logits[i], refined, thin, pairs.masks[i])
        for name, variant in variants.items():
            scores = cv2.resize(variant(frame), mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
            scorers[name].update(mask, np.argmax(scores, -1))
    return {name: {"miou": s.miou(), "boundary_f": s.boundary_f(), "iou": [float(x) for x in s.iou()]}
            for name, s in scorers.items()}, info.names


def main(description: str, variants: dict[str, Callable[[Frame], np.ndarray]]) -> None:
    """Score ``variants`` on the runs named on the command line; a JSON of everything, a table printed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    results, classes = {}, []
    for run in args.runs:
        results[run.name], classes = score_run(run, variants)
        args.json.write_text(json.dumps(results, indent=1))
    print(summary(results, classes, variants))


def summary(results: dict[str, dict], classes: list[str], variants: dict[str, Callable[[Frame], np.ndarray]]) -> str:
    """A markdown table: each variant's gain over the segmenter alone, mean over drives then seeds,
    with the spread between seed means, and its worst class."""
    seeds = sorted({name.rsplit("_s", 1)[1] for name in results})
    rows = ["| variant | Boundary F gain | spread | mIoU gain | spread | worst class IoU |", "|---|---|---|---|---|---|"]
    for variant in variants:
        if variant == "segmenter":
            continue
        cells = []
        for metric in ("boundary_f", "miou"):
            by_seed = [np.mean([100 * (r[variant][metric] - r["segmenter"][metric])
                                for name, r in results.items() if name.endswith(f"_s{seed}")]) for seed in seeds]
            cells += [f"{np.mean(by_seed):+.2f}", f"{max(by_seed) - min(by_seed):.2f}"]
        gains = np.nanmean([[100 * (a - b) for a, b in zip(r[variant]["iou"], r["segmenter"]["iou"], strict=True)]
                            for r in results.values()], axis=0)
        worst = int(np.nanargmin(gains))
        rows.append(f"| {variant} | {' | '.join(cells)} | {classes[worst]} {gains[worst]:+.1f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main(__doc__.splitlines()[0], VARIANTS)
