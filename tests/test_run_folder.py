"""The run folder both trainers share: create, refuse, resume, keep the best, versioned configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.train

from segrefine_edge.errors import SegrefineError  # noqa: E402
from segrefine_edge.training.config import TrainConfig, config_from_dict, config_to_dict  # noqa: E402
from segrefine_edge.training.run_folder import CONFIG_VERSION, RunFolder, read_run_config  # noqa: E402


def test_a_new_run_is_created_with_its_kind_and_version(tmp_path: Path):
    folder = RunFolder(tmp_path / "run", "refiner", {"steps": 4})
    folder.open(resume=False)
    assert not folder.path.exists()                      # nothing written before the inputs are known good
    folder.create()
    assert json.loads(folder.config_file.read_text()) == {"kind": "refiner", "version": CONFIG_VERSION, "steps": 4}
    with pytest.raises(SegrefineError, match="pass --resume"):
        RunFolder(tmp_path / "run", "refiner", {"steps": 4}).open(resume=False)
    with pytest.raises(SegrefineError, match="different config"):
        RunFolder(tmp_path / "run", "refiner", {"steps": 8}).open(resume=True)
    with pytest.raises(SegrefineError, match="not a segmenter run"):
        RunFolder(tmp_path / "run", "segmenter", {"steps": 4}).open(resume=True)
    RunFolder(tmp_path / "run", "refiner", {"steps": 4}).open(resume=True)
    with pytest.raises(SegrefineError, match="nothing to resume"):
        RunFolder(tmp_path / "empty", "refiner", {}).open(resume=True)


def test_a_run_from_before_the_version_field_still_resumes(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"steps": 4}))
    RunFolder(tmp_path, "refiner", {"steps": 4}).open(resume=True)


def test_only_a_better_record_replaces_the_kept_weights(tmp_path: Path):
    folder = RunFolder(tmp_path, "segmenter", {})
    folder.create()
    saved = []
    for record in ({"epoch": 1, "val_miou": 0.5}, {"epoch": 2, "val_miou": 0.4}, {"epoch": 3, "val_miou": 0.6}):
        folder.append_history(record)
        epoch = record["epoch"]
        folder.keep_if_best(record, lambda r: r["val_miou"], lambda path, e=epoch: saved.append((path.name, e)))
    assert saved == [("best.weights.h5", 1), ("best.weights.h5", 3)]
    assert folder.best_record()["epoch"] == 3
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 3


def test_configs_carry_a_version_and_a_newer_one_is_refused(tmp_path: Path):
    values = {"kind": "segmenter", "version": CONFIG_VERSION, **config_to_dict(TrainConfig())}
    assert config_from_dict(json.loads(json.dumps(values))).epochs == TrainConfig().epochs
    (tmp_path / "config.json").write_text(json.dumps({**values, "version": CONFIG_VERSION + 1}))
    with pytest.raises(SegrefineError, match="upgrade segrefine-edge"):
        read_run_config(tmp_path)
    with pytest.raises(SegrefineError, match="newer than this"):
        config_from_dict({**values, "version": CONFIG_VERSION + 1})
    with pytest.raises(SegrefineError, match="refiner run"):
        config_from_dict({"kind": "refiner"})
