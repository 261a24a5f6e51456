"""Training configuration: dataclasses saved as JSON beside every run, overridable by ``a.b=value``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segrefine_edge.errors import SegrefineError
from segrefine_edge.training.data import AugmentConfig
from segrefine_edge.training.deeplab import SegmenterConfig


@dataclass
class TrainConfig:
    """Every hyperparameter of a segmenter run; `config.json` in the run folder is this, resolved."""

    data: str = "../shared/data/camvid"
    train_split: str = "train"
    val_split: str = "val"
    backbone_weights: str | None = "../shared/weights/mobilenet_v2_1.0_224_imagenet_from_tf2ptq_no_top.weights.h5"
    # A finished run's best.weights.h5 to start from instead of ImageNet (a second schedule on top of a
    # first one, "warm restart"): the model config must be that run's.
    init_weights: str | None = None
    model: SegmenterConfig = field(default_factory=SegmenterConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval_hw: tuple[int, int] = (352, 480)
    # The shipped model's first schedule: 30 epochs with square-root median-frequency class weights;
    # it took two more schedules from these weights (init_weights). Scores: docs/experiments.md.
    epochs: int = 30
    batch: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "poly"
    class_weighting: str = "sqrt_median"
    ohem_fraction: float = 0.0
    lovasz_weight: float = 0.0
    # > 0 keeps an exponential moving average of the weights (Keras' optimizer EMA): each epoch is
    # scored with it and with the raw weights, and the averaged weights are the ones kept
    ema_momentum: float = 0.0
    seed: int = 0
    strategy: str = "default"
    steps_per_epoch: int | None = None
    val_limit: int | None = None
    # folds > 1 leaves fold ``held_out`` of the training split out (see train/folds.py): its
    # outputs on that fold are a refiner's training inputs from unseen images
    folds: int = 1
    held_out: int = 0
    # The generalization protocol (train/folds.py): train and val pooled, this sequence (e.g. 0006R0)
    # left out whole and scored every epoch as ``held_out_miou``. Nothing is selected on it: the
    # last epoch's weights are the ones kept.
    held_out_sequence: str | None = None
    # The final fit of a recipe the protocol chose (standard practice for CamVid test figures): train
    # and val pooled, every labelled image trained on. Val is still scored each epoch, as
    # ``seen_val_miou``, a check that training went well and nothing more, since it was trained on;
    # the last epoch's weights are the ones kept.
    final_fit: bool = False


def _from_dict(cls: type, values: dict[str, Any]):
    kwargs = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in names:
            raise SegrefineError(f"unknown config key '{key}' for {cls.__name__}; known: {', '.join(names)}")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            value = _from_dict(type(default), value)
        elif isinstance(default, tuple):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A segmenter config from a run's config.json (its kind and format version are checked and
    dropped) or from a hand-written one."""
    from segrefine_edge.training.run_folder import CONFIG_VERSION

    values = dict(values)
    kind, version = values.pop("kind", "segmenter"), values.pop("version", 0)
    if kind != "segmenter":
        raise SegrefineError(f"this config is a {kind} run's, not a segmenter's")
    if version > CONFIG_VERSION:
        raise SegrefineError(f"config version {version} is newer than this segrefine-edge reads ({CONFIG_VERSION}); "
                             "upgrade segrefine-edge")
    return _from_dict(TrainConfig, values)


def with_defaults(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """A saved run's config (segmenter or refiner, ``cls`` its dataclass) as this version writes it: a
    lever added since the run trained takes its default, which is the recipe the run trained."""
    return dataclasses.asdict(_from_dict(cls, {k: v for k, v in values.items() if k not in ("kind", "version")}))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def load_config(path: str | Path) -> TrainConfig:
    try:
        return config_from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:
        raise SegrefineError(f"cannot read config {path}: {exc}") from exc


def apply_overrides(config, overrides: list[str]):
    """Apply ``a.b=value`` strings to any config dataclass (segmenter or refiner run); values
    are parsed as JSON where they can be, else kept as text."""
    values = dataclasses.asdict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SegrefineError(f"override '{item}' is not key=value (e.g. model.alpha=0.5)")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        target = values
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(target.get(part), dict):
                raise SegrefineError(f"override '{key}': '{part}' is not a config section")
            target = target[part]
        if leaf not in target:
            raise SegrefineError(f"override '{key}': unknown key '{leaf}'")
        target[leaf] = value
    return _from_dict(type(config), values)
