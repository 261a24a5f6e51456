"""Images a segmenter never trains on: contiguous folds of a split, or a whole held-out sequence.

A refiner learns from the segmenter's outputs, and on its own training images the segmenter is
better than on any other (CamVid poles: 0.36-0.48 IoU on its training sequences, 0.14 on val,
frames of the same drive it never saw). A segmenter trained without one fold gives that fold
the errors a deployed segmenter makes. Folds are contiguous chunks of each sequence (the name
up to its first '_'), so neighbouring frames, nearly the same image, fall in the same fold.

A held-out *sequence* answers a different question: how the recipe does on a drive it never saw.
CamVid's val is another part of a training drive (0016E5) and flattered every choice made on it
(0.754 val, 0.646 on the unseen drive of the hidden test split), so the protocol pools every
labelled split, trains on all drives but one and scores that one.
"""

from __future__ import annotations

from collections import defaultdict

from segrefine_edge.datasets import Pair
from segrefine_edge.errors import SegrefineError


def sequence_of(pair: Pair) -> str:
    """The drive an image belongs to: CamVid names frames ``SEQUENCE_FRAME.png``."""
    return pair.image.name.split("_")[0]


def check_fold(folds: int, held_out: int) -> None:
    if folds < 1 or not 0 <= held_out < folds:
        raise SegrefineError(f"fold {held_out} of {folds} does not exist; set folds >= 2 and held_out "
                             "from 0 to folds - 1 (folds=1 trains on the whole split)")


def fold_of(pairs: list[Pair], folds: int) -> list[int]:
    """Each pair's fold: its sequence's frames, in name order, cut into ``folds`` contiguous chunks."""
    by_sequence: dict[str, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_sequence[sequence_of(pair)].append(index)
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


def held_out_sequences(setting: str) -> list[str]:
    """The drives a ``held_out_sequence`` setting names: one (``0006R0``), or several joined by commas
    (``0001TP,0006R0``: a segmenter that never saw either, whose outputs on each are what a refiner
    fold needs of images from a drive unseen by the segmenter that made them)."""
    return [name.strip() for name in setting.split(",") if name.strip()]


def split_by_sequence(pools: list[list[Pair]], held_out_sequence: str) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, held-out pairs): every labelled split pooled, the named sequences taken out whole."""
    pairs = [pair for pool in pools for pair in pool]
    drives = set(held_out_sequences(held_out_sequence))
    known = sorted({sequence_of(pair) for pair in pairs})
    unknown = sorted(drives - set(known)) if drives else [held_out_sequence]
    if unknown:
        raise SegrefineError(f"held_out_sequence '{unknown[0]}' names no image; the sequences here are "
                             f"{', '.join(known)}")
    held_out = [pair for pair in pairs if sequence_of(pair) in drives]
    training = [pair for pair in pairs if sequence_of(pair) not in drives]
    if not training:
        raise SegrefineError(f"holding out '{held_out_sequence}' leaves nothing to train on; the sequences here are "
                             f"{', '.join(known)}")
    return training, held_out
