"""The protocol report: runs grouped by recipe, means over held-out sequences, spread over seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.train

from segrefine_edge.errors import SegrefineError  # noqa: E402
from segrefine_edge.training.config import TrainConfig, config_to_dict  # noqa: E402
from segrefine_edge.training.protocol import collect  # noqa: E402


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
    assert summary["mean_miou"] == pytest.approx(0.565) and summary["spread"] == pytest.approx(0.03)
    assert summary["by_sequence"] == pytest.approx({"A": 0.52, "B": 0.61})
    assert summary["class_iou"][1] is None                   # a class absent from one run has no mean
    assert capture.summary()["seeds"] == [0] and capture.summary()["mean_miou"] == pytest.approx(0.62)
    assert capture.summary()["spread"] is None


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
    assert json.loads(out.read_text())[0]["by_seed"] == {"0": 0.5, "1": 0.6}
