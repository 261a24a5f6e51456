"""The run folder both trainers write: config, history, best weights, checkpoints, TensorBoard.

One class so that the segmenter and the refiner create, refuse, resume and keep their best
weights the same way::

    runs/NAME/config.json        the resolved config, with its kind and format version
    runs/NAME/history.jsonl      one JSON record per evaluation (epoch or step)
    runs/NAME/best.weights.h5    the weights of the best record so far, and best.json that record
    runs/NAME/checkpoints/       what --resume continues from
    runs/NAME/tensorboard/       scalars for TensorBoard
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segrefine_edge.errors import SegrefineError

if TYPE_CHECKING:
    import tensorflow as tf

CONFIG_VERSION = 1   # bump when a config key changes meaning; older runs then name what to do


class RunFolder:
    """A training run's folder. ``open`` checks it before any work; ``create`` writes the config
    once the inputs are known good, so a failed start leaves no half-made run behind."""

    def __init__(self, path: str | Path, kind: str, config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.kind = kind
        self.config = {"kind": kind, "version": CONFIG_VERSION, **config}

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    def open(self, resume: bool) -> None:
        """Refuse an existing run unless resuming it with the same config; refuse to resume nothing."""
        if not self.config_file.exists():
            if resume:
                raise SegrefineError(f"nothing to resume in {self.path}: it has no config.json")
            return
        if not resume:
            raise SegrefineError(f"{self.path} already holds a run; pass --resume to continue it or choose a new --out")
        saved = read_run_config(self.path)
        if saved.get("kind", self.kind) != self.kind:
            raise SegrefineError(f"{self.path} holds a {saved['kind']} run, not a {self.kind} run; choose another --out")
        if _comparable(saved) != _comparable(self.config):
            raise SegrefineError(f"{self.path} was started with a different config; resume it with the same "
                                 "config (see its config.json) or start a new --out")

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self.config, indent=1))

    def append_history(self, record: dict[str, Any]) -> None:
        with open(self.path / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def best_record(self) -> dict[str, Any] | None:
        """The record the kept weights scored, or None before the first evaluation."""
        best = self.path / "best.json"
        return json.loads(best.read_text()) if best.exists() else None

    def keep_if_best(self, record: dict[str, Any], key: Callable[[dict[str, Any]], float],
                     save_weights: Callable[[Path], None]) -> bool:
        """Save the weights and the record when ``key(record)`` beats the kept one's."""
        best = self.best_record()
        if best is not None and key(record) <= key(best):
            return False
        save_weights(self.path / "best.weights.h5")
        (self.path / "best.json").write_text(json.dumps(record, indent=1))
        return True

    def checkpoints(self, checkpoint: tf.train.Checkpoint, folder: Path | None = None) -> tf.train.CheckpointManager:
        """A manager keeping the last two checkpoints; ``restore_latest`` continues from them."""
        import tensorflow as tf  # here, so reading run folders (`train protocol`) needs no TensorFlow

        return tf.train.CheckpointManager(checkpoint, folder or self.path / "checkpoints", max_to_keep=2)

    def tensorboard(self) -> tf.summary.SummaryWriter:
        import tensorflow as tf

        return tf.summary.create_file_writer(str(self.path / "tensorboard"))


def restore_latest(manager: tf.train.CheckpointManager, resume: bool) -> bool:
    """Restore the newest checkpoint when resuming; whether there was one."""
    if resume and manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint).expect_partial()
        return True
    return False


def read_run_config(run: str | Path) -> dict[str, Any]:
    """A run's config.json as saved, checked to be a format this version reads."""
    path = Path(run) / "config.json"
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SegrefineError(f"cannot read config {path}: {exc}") from exc
    version = values.get("version", 0)
    if version > CONFIG_VERSION:
        raise SegrefineError(f"{path} has config version {version}, newer than this segrefine-edge reads "
                             f"({CONFIG_VERSION}); upgrade segrefine-edge")
    return values


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The config without its bookkeeping fields (a run from before they existed still resumes)."""
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k not in ("kind", "version")}
