"""The protocol report: runs grouped by recipe, means over held-out sequences, spread over seeds."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.train

from segrefine_edge.errors import SegrefineError  # noqa: E402
from segrefine_edge.training.config import TrainConfig, config_to_dict  # noqa: E402
from segrefine_edge.training.protocol import Recipe, collect, format_recipes, verdict  # noqa: E402
from segrefine_edge.training.refiner_loop import RefinerTrainConfig  # noqa: E402
from segrefine_edge.training.run_folder import read_run_config  # noqa: E402


def _run(folder: Path, sequence: str | None, seed: int, miou: float, **changes) -> Path:
    """A finished run folder as the trainer leaves it (config.json, best.json); synthetic scores."""
    config = config_to_dict(TrainConfig(held_out_sequence=sequence, seed=seed))
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        (config[section] if leaf else config)[leaf or section] = value
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": "segmenter", "version": 1, **config}))
    (folder / "best.json").write_text(json.dumps({"epoch": 10, "held_out_miou": miou,
                                                  "held_out_iou": [miou, None if seed else 0.5]}))
    return folder


def _shifted(recipe: Recipe, by: float) -> Recipe:
    """The same runs with every mIoU moved by ``by``: a recipe as far from ``recipe`` as that."""
    return Recipe(recipe.kind, {"shifted": by}, {k: {"miou": v["miou"] + by} for k, v in recipe.scores.items()})


def test_recipes_are_grouped_averaged_over_sequences_and_spread_over_seeds(tmp_path: Path):
    runs = [
        _run(tmp_path / "a1", "A", 0, 0.50), _run(tmp_path / "a2", "B", 0, 0.60),
        _run(tmp_path / "a3", "A", 1, 0.54), _run(tmp_path / "a4", "B", 1, 0.62),
        _run(tmp_path / "b1", "A", 0, 0.58, augment__capture=0.5), _run(tmp_path / "b2", "B", 0, 0.66, augment__capture=0.5),
        _run(tmp_path / "b3", "A", 1, 0.70, augment__capture=0.5),   # seed 1 lacks B: left out of the mean
    ]
    base, capture = sorted(collect(runs), key=lambda r: r.settings.get("augment.capture", 0))
    assert base.settings == {"augment.capture": 0.0} and capture.settings == {"augment.capture": 0.5}
    summary = base.summary()
    miou = summary["metrics"]["miou"]
    assert summary["headline"] == "miou"
    assert miou["mean"] == pytest.approx(0.565) and miou["spread"] == pytest.approx(0.03)
    assert miou["by_sequence"] == pytest.approx({"A": 0.52, "B": 0.61})
    assert summary["class_iou"][1] is None                   # a class absent from one run has no mean
    assert capture.summary()["seeds"] == [0] and capture.summary()["metrics"]["miou"]["mean"] == pytest.approx(0.62)
    assert capture.summary()["metrics"]["miou"]["spread"] is None
    third = _run(tmp_path / "b4", "B", 1, 0.60, augment__capture=0.5)     # now two complete seeds: 0.62, 0.65
    base, capture = sorted(collect([*runs, third]), key=lambda r: r.settings.get("augment.capture", 0))
    assert verdict(capture, base) == ("    against {'augment.capture': 0.0}: miou +0.0700, counts: outside both "
                                      "spreads (0.0300, 0.0300)")
    assert "does not count" in verdict(capture, _shifted(capture, -0.02))


def test_a_run_from_before_a_lever_existed_groups_with_the_recipe_it_trained(tmp_path: Path):
    """A config saved before ``augment.balanced_crops`` existed is the recipe with it off."""
    old = _run(tmp_path / "old", "A", 0, 0.50)
    saved = json.loads((old / "config.json").read_text())
    del saved["augment"]["balanced_crops"]
    (old / "config.json").write_text(json.dumps(saved))
    recipes = collect([old, _run(tmp_path / "new", "A", 1, 0.54), _run(tmp_path / "on", "A", 0, 0.6,
                                                                         augment__balanced_crops=0.5)])
    assert sorted(len(r.scores) for r in recipes) == [1, 2]


def test_a_run_outside_the_protocol_is_one_line(tmp_path: Path):
    with pytest.raises(SegrefineError, match="not a protocol run"):
        collect([_run(tmp_path / "v", None, 0, 0.7)])
    unfinished = _run(tmp_path / "u", "A", 0, 0.7)
    (unfinished / "best.json").unlink()
    result = subprocess.run([sys.executable, "-m", "segrefine_edge", "train", "protocol", str(unfinished)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "has no finished epoch yet" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_command_prints_each_recipe_and_writes_json(tmp_path: Path):
    runs = [_run(tmp_path / f"r{s}{q}", q, s, 0.5 + s / 10) for s in (0, 1) for q in "AB"]
    out = tmp_path / "protocol.json"
    result = subprocess.run([sys.executable, "-m", "segrefine_edge", "train", "protocol", *map(str, runs),
                             "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mean held-out mIoU 0.5500 over 2 sequence(s) x 2 seed(s), spread between seeds 0.1000" in result.stdout
    assert "against" not in result.stdout             # one recipe: nothing to judge it against
    assert json.loads(out.read_text())[0]["metrics"]["miou"]["by_seed"] == {"0": 0.5, "1": 0.6}


def _refiner_run(folder: Path, segmenter: Path, seed: int, before: tuple[float, float], after: tuple[float, float],
                 adversarial: float = 0.0, nested: tuple[Path, ...] = ()) -> Path:
    """A finished refiner protocol run: mIoU and Boundary F without and with it, per-class IoU."""
    config = dataclasses.asdict(RefinerTrainConfig(segmenter=str(segmenter), seed=seed,
                                                   adversarial_weight=adversarial,
                                                   heldout_segmenters=[str(n) for n in nested],
                                                   held_out_sequence=read_run_config(segmenter)["held_out_sequence"]))
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"kind": "refiner", "version": 1, **config}))
    (folder / "best.json").write_text(json.dumps({
        "step": 375, "segmenter_miou": before[0], "segmenter_boundary_f": before[1], "refined_miou": after[0],
        "refined_boundary_f": after[1], "segmenter_iou": [0.5, 0.2, None], "refined_iou": [0.52, 0.17, None]}))
    return folder


def test_refiner_runs_are_judged_by_their_gain_over_the_fold_segmenter(tmp_path: Path):
    """A refiner recipe's figure is what it adds on drives neither model saw; refiners behind
    different segmenter recipes are different recipes even though each fold's run differs."""
    segmenters = {q: _run(tmp_path / f"seg{q}", q, 0, 0.5) for q in "AB"}
    other = {q: _run(tmp_path / f"segcap{q}", q, 0, 0.5, augment__capture=0.2) for q in "AB"}
    runs = [_refiner_run(tmp_path / "ceA0", segmenters["A"], 0, (0.50, 0.60), (0.51, 0.64)),
            _refiner_run(tmp_path / "ceB0", segmenters["B"], 0, (0.40, 0.50), (0.40, 0.52)),
            _refiner_run(tmp_path / "ceA1", segmenters["A"], 1, (0.50, 0.60), (0.49, 0.63)),
            _refiner_run(tmp_path / "ceB1", segmenters["B"], 1, (0.40, 0.50), (0.41, 0.53)),
            _refiner_run(tmp_path / "advA", segmenters["A"], 0, (0.50, 0.60), (0.50, 0.61), adversarial=0.01),
            _refiner_run(tmp_path / "advB", segmenters["B"], 0, (0.40, 0.50), (0.40, 0.51), adversarial=0.01),
            _refiner_run(tmp_path / "capA", other["A"], 0, (0.55, 0.60), (0.56, 0.61)),
            _refiner_run(tmp_path / "capB", other["B"], 0, (0.45, 0.50), (0.46, 0.51))]
    recipes = collect(runs)
    assert len(recipes) == 3
    ce = next(r for r in recipes if r.settings.get("adversarial_weight") == 0.0
              and r.settings.get("segmenter_recipe.augment.capture") == 0.0)
    s = ce.summary()
    assert s["headline"] == "boundary_f_gain" and s["seeds"] == [0, 1]
    assert s["metrics"]["boundary_f_gain"]["mean"] == pytest.approx(0.03)
    assert s["metrics"]["boundary_f_gain"]["by_seed"] == pytest.approx({"0": 0.03, "1": 0.03})
    assert s["metrics"]["miou_gain"]["by_sequence"] == pytest.approx({"A": 0.0, "B": 0.005})
    assert s["class_iou_gain"][:2] == pytest.approx([0.02, -0.03]) and s["class_iou_gain"][2] is None
    text = format_recipes(recipes, ["Sky", "Pole", "Fence"])
    assert "Boundary F 0.5500 -> 0.5800 (+0.0300, spread 0.0000)" in text and "Pole -0.030" in text
    # the first recipe given is the baseline; the adversarial one has one seed, so no spread to judge by
    assert text.count("against {'adversarial_weight': 0.0") == 2 and "one seed: no spread to judge by" in text


def test_a_refiner_run_from_before_a_lever_existed_groups_with_the_recipe_it_trained(tmp_path: Path):
    """A refiner config saved before ``capture`` and ``feature_matching_weight`` existed is the
    recipe with both off."""
    segmenter = _run(tmp_path / "segA", "A", 0, 0.5)
    old = _refiner_run(tmp_path / "old", segmenter, 0, (0.5, 0.6), (0.5, 0.62))
    saved = json.loads((old / "config.json").read_text())
    del saved["capture"], saved["feature_matching_weight"]
    (old / "config.json").write_text(json.dumps(saved))
    recipes = collect([old, _refiner_run(tmp_path / "new", segmenter, 1, (0.5, 0.6), (0.5, 0.61))])
    assert len(recipes) == 1 and sorted(recipes[0].scores) == [("A", 0), ("A", 1)]


def test_nested_fold_refiners_are_their_own_recipe_and_a_repeated_run_is_refused(tmp_path: Path):
    """Refiners whose unseen inputs came from nested segmenters differ from those without, although
    every other setting (heldout_share included) is the same and each fold names other runs."""
    segmenters = {q: _run(tmp_path / f"seg{q}", q, 0, 0.5) for q in "AB"}
    only = {q: _run(tmp_path / f"only{q}", q, 0, 0.3) for q in "AB"}       # stand-ins for single-drive runs
    plain = [_refiner_run(tmp_path / f"ce{q}", segmenters[q], 0, (0.5, 0.6), (0.5, 0.62)) for q in "AB"]
    nested = [_refiner_run(tmp_path / f"nested{q}", segmenters[q], 0, (0.5, 0.6), (0.5, 0.58),
                           nested=(only["B" if q == "A" else "A"],)) for q in "AB"]
    recipes = collect([*plain, *nested])
    assert len(recipes) == 2 and [sorted(r.scores) for r in recipes] == [[("A", 0), ("B", 0)]] * 2
    assert recipes[0].settings == {"heldout_recipes": []}
    assert recipes[1].settings == {"heldout_recipes": ["the segmenter's recipe"]}
    with pytest.raises(SegrefineError, match="both hold out A with seed 0; give each run once"):
        collect([*plain, _refiner_run(tmp_path / "again", segmenters["A"], 0, (0.5, 0.6), (0.5, 0.6))])
