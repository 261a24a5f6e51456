"""The generalization protocol's verdict: runs grouped by recipe, scored on the drives they never saw.

Each run trained with ``held_out_sequence`` set holds its last scores on that drive in ``best.json``:
a segmenter its mIoU, a refiner the segmenter's and its own mIoU and Boundary F there. Runs whose
configs differ only in the seed and the held-out sequence (and, for a refiner, the fold's segmenter
run, whose own recipe stands in for it) are one recipe. A recipe's figure is the mean over held-out
sequences; its spread is the range, over seeds, of that mean (each seed's runs averaged over the
sequences), so a lever counts only when it moves the mean by more than the spread of both recipes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.errors import SegrefineError
from segrefine_edge.training.run_folder import read_run_config

PER_RUN = ("seed", "held_out_sequence", "data", "init_weights", "backbone_weights", "strategy", "segmenter",
           "heldout_segmenters")
HEADLINE = {"segmenter": "miou", "refiner": "boundary_f_gain"}   # the figure a recipe is judged by
CLASS_VALUE = {"segmenter": "iou", "refiner": "iou_gain"}       # what its per-class means hold


def _gain(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def run_scores(kind: str, record: dict[str, Any]) -> tuple[dict[str, float], list[float | None]]:
    """A finished run's figures on its held-out drive and its per-class values: a segmenter's mIoU
    and class IoU; a refiner's mIoU and Boundary F with and without it, and its change to each class's IoU."""
    if kind != "refiner":
        return {"miou": record["held_out_miou"]}, record["held_out_iou"]
    metrics = {k: record[k] for k in ("segmenter_miou", "refined_miou", "segmenter_boundary_f", "refined_boundary_f")}
    metrics["miou_gain"] = metrics["refined_miou"] - metrics["segmenter_miou"]
    metrics["boundary_f_gain"] = metrics["refined_boundary_f"] - metrics["segmenter_boundary_f"]
    return metrics, [_gain(a, b) for a, b in zip(record["segmenter_iou"], record["refined_iou"], strict=True)]


@dataclass
class Recipe:
    """The protocol runs of one recipe: figures by (sequence, seed), and the settings that set it apart."""

    kind: str
    settings: dict[str, Any]
    scores: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    per_class: dict[tuple[str, int], list[float | None]] = field(default_factory=dict)

    @property
    def sequences(self) -> list[str]:
        return sorted({sequence for sequence, _ in self.scores})

    @property
    def seeds(self) -> list[int]:
        return sorted({seed for _, seed in self.scores})

    @property
    def metrics(self) -> list[str]:
        return list(next(iter(self.scores.values()))) if self.scores else []

    def complete_seeds(self) -> list[int]:
        """Seeds with a run on every held-out sequence: only these enter the mean."""
        return [s for s in self.seeds if all((q, s) in self.scores for q in self.sequences)]

    def seed_means(self, metric: str) -> dict[int, float]:
        return {s: float(np.mean([self.scores[(q, s)][metric] for q in self.sequences])) for s in self.complete_seeds()}

    def sequence_means(self, metric: str) -> dict[str, float]:
        seeds = self.complete_seeds()
        return ({q: float(np.mean([self.scores[(q, s)][metric] for s in seeds])) for q in self.sequences}
                if seeds else {})

    def class_means(self) -> list[float | None]:
        """Per-class values averaged over every complete (sequence, seed) run; None where a class never showed."""
        rows = [self.per_class[(q, s)] for q in self.sequences for s in self.complete_seeds()]
        columns = zip(*rows, strict=True) if rows else []
        return [None if any(v is None for v in column) else float(np.mean(column)) for column in columns]

    def figure(self, metric: str) -> dict[str, Any]:
        """One metric's mean over the sequences, spread over seeds, and both breakdowns."""
        values = list(self.seed_means(metric).values())
        return {"mean": float(np.mean(values)) if values else None,
                "spread": float(max(values) - min(values)) if len(values) > 1 else None,
                "by_sequence": self.sequence_means(metric),
                "by_seed": {str(k): v for k, v in self.seed_means(metric).items()}}

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "settings": self.settings,
            "held_out_sequences": self.sequences,
            "seeds": self.complete_seeds(),
            "headline": HEADLINE[self.kind],
            "metrics": {m: self.figure(m) for m in self.metrics},
            f"class_{CLASS_VALUE[self.kind]}": self.class_means(),
        }


def _as_current(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config as this version writes it, so old and new runs of one recipe group together.
    Without TensorFlow (which the config classes import) configs are compared as saved."""
    try:
        from segrefine_edge.training.config import TrainConfig, with_defaults
        if config.get("kind", "segmenter") == "refiner":
            from segrefine_edge.training.refiner_loop import RefinerTrainConfig as cls
        else:
            cls = TrainConfig
    except ImportError:
        return config
    return {**config, **with_defaults(cls, config)}


def _heldout_recipes(config: dict[str, Any]) -> list[Any]:
    """Nested folds: the recipes of the runs that gave a refiner its unseen inputs, not the runs (which
    differ by fold), each as what sets it apart from the refiner's segmenter; empty where none did."""
    own = _flatten(config["segmenter_recipe"])
    recipes = {json.dumps({k: v for k, v in _flatten(_run_recipe(run)).items() if own.get(k) != v}, sort_keys=True)
               for run in config.get("heldout_segmenters", [])}
    return [json.loads(recipe) or "the segmenter's recipe" for recipe in sorted(recipes)]


def _run_recipe(run: str | Path) -> dict[str, Any]:
    """The recipe of the run in folder ``run`` (a refiner's segmenter, a nested fold's segmenter)."""
    return json.loads(_recipe_key(_as_current(read_run_config(run))))


def _recipe_key(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in (*PER_RUN, "version")}, sort_keys=True)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def collect(runs: list[str | Path]) -> list[Recipe]:
    """Group finished protocol runs by recipe; each recipe's settings are what differs between recipes."""
    grouped: dict[str, Recipe] = {}
    configs: dict[str, dict[str, Any]] = {}
    for run in runs:
        config = _as_current(read_run_config(run))
        sequence = config.get("held_out_sequence")
        best = Path(run) / "best.json"
        if not sequence:
            raise SegrefineError(f"{run} is not a protocol run (no held_out_sequence); train it with "
                                 "--set held_out_sequence=NAME")
        if not best.is_file():
            raise SegrefineError(f"{run} has no finished epoch yet (no best.json); let it finish or leave it out")
        kind = config.get("kind", "segmenter")
        if kind == "refiner":      # the fold's segmenter runs differ by drive; their recipes do not
            config["segmenter_recipe"] = _run_recipe(config["segmenter"])
            config["heldout_recipes"] = _heldout_recipes(config)
        key = _recipe_key(config)
        configs.setdefault(key, _flatten(json.loads(key)))
        recipe = grouped.setdefault(key, Recipe(kind, {}))
        if (sequence, config["seed"]) in recipe.scores:
            raise SegrefineError(f"{run} and another run of the same recipe both hold out {sequence} with seed "
                                 f"{config['seed']}; give each run once")
        metrics, per_class = run_scores(kind, json.loads(best.read_text()))
        recipe.scores[(sequence, config["seed"])] = metrics
        recipe.per_class[(sequence, config["seed"])] = per_class
    def items(config: dict[str, Any]) -> set[tuple[str, str]]:
        return {(k, json.dumps(v)) for k, v in config.items()}

    shared = set.intersection(*(items(c) for c in configs.values())) if configs else set()
    for key, recipe in grouped.items():
        recipe.settings = ({k: v for k, v in configs[key].items() if (k, json.dumps(v)) not in shared}
                           or {"recipe": "as configured"})
    return list(grouped.values())


def _spread(figure: dict[str, Any]) -> str:
    return "n/a (one seed)" if figure["spread"] is None else f"{figure['spread']:.4f}"


def _segmenter_lines(s: dict[str, Any]) -> list[str]:
    miou = s["metrics"]["miou"]
    return [f"{s['settings']}: mean held-out mIoU {miou['mean']:.4f} over {len(s['held_out_sequences'])} "
            f"sequence(s) x {len(s['seeds'])} seed(s), spread between seeds {_spread(miou)}",
            "    by sequence: " + ", ".join(f"{q} {v:.4f}" for q, v in miou["by_sequence"].items())]


def _refiner_lines(s: dict[str, Any]) -> list[str]:
    m = s["metrics"]
    bf, miou = m["boundary_f_gain"], m["miou_gain"]
    return [f"{s['settings']}: refiner on held-out drives, Boundary F {m['segmenter_boundary_f']['mean']:.4f} -> "
            f"{m['refined_boundary_f']['mean']:.4f} ({bf['mean']:+.4f}, spread {_spread(bf)}), mIoU "
            f"{m['segmenter_miou']['mean']:.4f} -> {m['refined_miou']['mean']:.4f} ({miou['mean']:+.4f}, spread "
            f"{_spread(miou)}) over {len(s['held_out_sequences'])} sequence(s) x {len(s['seeds'])} seed(s)",
            "    by sequence: " + ", ".join(f"{q} Boundary F {bf['by_sequence'][q]:+.4f} mIoU {miou['by_sequence'][q]:+.4f}"
                                          for q in s["held_out_sequences"])]


def verdict(recipe: Recipe, baseline: Recipe) -> str:
    """Whether ``recipe`` moves the headline figure against ``baseline`` by more than both spreads."""
    metric = HEADLINE[recipe.kind]
    mine, theirs = recipe.figure(metric), baseline.figure(metric)
    change = mine["mean"] - theirs["mean"]
    if mine["spread"] is None or theirs["spread"] is None:
        judged = "one seed: no spread to judge by"
    elif abs(change) > max(mine["spread"], theirs["spread"]):
        judged = f"counts: outside both spreads ({theirs['spread']:.4f}, {mine['spread']:.4f})"
    else:
        judged = f"does not count: inside the spread ({max(mine['spread'], theirs['spread']):.4f})"
    return f"    against {baseline.settings}: {metric} {change:+.4f}, {judged}"


def format_recipes(recipes: list[Recipe], class_names: list[str] | None = None) -> str:
    """A plain-text table: one line per recipe, then per-sequence means and the classes (a
    segmenter's IoU, a refiner's change to it), and each recipe judged against the first one
    of its kind given (the baseline)."""
    lines = []
    baselines: dict[str, Recipe] = {}
    for recipe in recipes:
        s = recipe.summary()
        if not s["seeds"]:
            lines.append(f"{s['settings']}: no seed has a run on every held-out sequence yet")
            continue
        lines += _refiner_lines(s) if recipe.kind == "refiner" else _segmenter_lines(s)
        baseline = baselines.setdefault(recipe.kind, recipe)
        if baseline is not recipe:
            lines.append(verdict(recipe, baseline))
        if class_names:
            sign = "+" if recipe.kind == "refiner" else ""
            lines.append(f"    by class ({CLASS_VALUE[recipe.kind].replace('_', ' ')}): " + ", ".join(
                f"{n} {'-' if v is None else format(v, sign + '.3f')}"
                for n, v in zip(class_names, s[f"class_{CLASS_VALUE[recipe.kind]}"], strict=False)))
    return "\n".join(lines)
