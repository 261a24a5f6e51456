"""Contiguous folds of a video dataset's training split, for segmenter outputs on unseen images.

A refiner learns from the segmenter's outputs, and on its own training images the segmenter is
better than on any other (CamVid poles: 0.36-0.48 IoU on its training sequences, 0.14 on val,
frames of the same drive it never saw). A segmenter trained without one fold gives that fold
the errors a deployed segmenter makes. Folds are contiguous chunks of each sequence (the name
up to its first '_'), so neighbouring frames, nearly the same image, fall in the same fold.
"""

from __future__ import annotations

from collections import defaultdict

from segrefine_edge.datasets import Pair
from segrefine_edge.errors import SegrefineError


def check_fold(folds: int, held_out: int) -> None:
    if folds < 1 or not 0 <= held_out < folds:
        raise SegrefineError(f"fold {held_out} of {folds} does not exist; set folds >= 2 and held_out "
                             "from 0 to folds - 1 (folds=1 trains on the whole split)")


def fold_of(pairs: list[Pair], folds: int) -> list[int]:
    """Each pair's fold: its sequence's frames, in name order, cut into ``folds`` contiguous chunks."""
    by_sequence: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_sequence[pair.image.name.split("_")[0]].append(index)
    fold = [0] * len(pairs)
    for indices in by_sequence.values():
        ordered = sorted(indices, key=lambda i: pairs[i].image.name)
        for rank, index in enumerate(ordered):
            fold[index] = rank * folds // len(ordered)
    return fold


def without_fold(pairs: list[Pair], folds: int, held_out: int) -> list[Pair]:
    """The pairs a segmenter trained without fold ``held_out`` of ``folds`` trains on."""
    check_fold(folds, held_out)
    if folds == 1:
        return pairs
    return [pair for pair, fold in zip(pairs, fold_of(pairs, folds), strict=True) if fold != held_out]
