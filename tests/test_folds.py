"""Folds of a video training split: contiguous chunks of each sequence, every image in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from segrefine_edge.datasets import Pair
from segrefine_edge.errors import SegrefineError
from segrefine_edge.training.folds import fold_of, held_out_sequences, split_by_sequence, without_fold


def _pairs(names: list[str]) -> list[Pair]:
    return [Pair(Path("img") / name, Path("ann") / name) for name in names]


def test_each_sequence_is_cut_into_contiguous_chunks():
    names = [f"A_{i:03d}.png" for i in range(6)] + [f"B_{i:03d}.png" for i in range(3)]
    pairs = _pairs(names[::-1])                  # the split's order does not matter, frame names do
    folds = dict(zip((p.image.name for p in pairs), fold_of(pairs, 2), strict=True))
    assert [folds[f"A_{i:03d}.png"] for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert [folds[f"B_{i:03d}.png"] for i in range(3)] == [0, 0, 1]


def test_a_fold_run_trains_on_every_other_fold():
    pairs = _pairs([f"A_{i:03d}.png" for i in range(4)])
    assert [p.image.name for p in without_fold(pairs, 2, 1)] == ["A_000.png", "A_001.png"]
    assert without_fold(pairs, 1, 0) == pairs


@pytest.mark.parametrize("folds, held_out", [(2, 2), (0, 0), (3, -1)])
def test_a_fold_that_does_not_exist_is_one_line(folds: int, held_out: int):
    with pytest.raises(SegrefineError, match="does not exist; set folds >= 2"):
        without_fold(_pairs(["A_000.png"]), folds, held_out)


def test_a_held_out_sequence_is_taken_from_every_split_whole():
    train = _pairs(["A_000.png", "A_001.png", "B_000.png"])
    val = _pairs(["B_100.png", "C_000.png"])
    training, held_out = split_by_sequence([train, val], "B")
    assert [p.image.name for p in held_out] == ["B_000.png", "B_100.png"]
    assert [p.image.name for p in training] == ["A_000.png", "A_001.png", "C_000.png"]


def test_an_unknown_or_only_sequence_is_one_line():
    with pytest.raises(SegrefineError, match="'Z' names no image; the sequences here are A, B"):
        split_by_sequence([_pairs(["A_000.png", "B_000.png"])], "Z")
    with pytest.raises(SegrefineError, match="leaves nothing to train on"):
        split_by_sequence([_pairs(["A_000.png"])], "A")


def test_several_sequences_can_be_held_out_at_once():
    """A nested fold's segmenter: trained on one drive, so its outputs on the other two are unseen."""
    pairs = _pairs(["A_000.png", "B_000.png", "B_001.png", "C_000.png"])
    training, held_out = split_by_sequence([pairs], "A, C")
    assert held_out_sequences("A, C") == ["A", "C"]
    assert [p.image.name for p in held_out] == ["A_000.png", "C_000.png"]
    assert [p.image.name for p in training] == ["B_000.png", "B_001.png"]
    with pytest.raises(SegrefineError, match="'Z' names no image"):
        split_by_sequence([pairs], "A,Z")
    with pytest.raises(SegrefineError, match="leaves nothing to train on"):
        split_by_sequence([pairs], "A,B,C")
    with pytest.raises(SegrefineError, match="names no image"):
        split_by_sequence([pairs], " , ")
