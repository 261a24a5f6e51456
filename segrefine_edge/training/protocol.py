"""The generalization protocol's verdict: runs grouped by recipe, scored on the drives they never saw.

Each run trained with ``held_out_sequence`` set holds its last epoch's mIoU on that drive in
``best.json``. Runs whose configs differ only in the seed and the held-out sequence are one
recipe. A recipe's figure is the mean over held-out sequences; its spread is the range, over
seeds, of that mean (each seed's runs averaged over the sequences), so a lever counts only when
it moves the mean by more than the spread of both recipes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.errors import SegrefineError
from segrefine_edge.training.run_folder import read_run_config

PER_RUN = ("seed", "held_out_sequence", "data", "init_weights", "backbone_weights", "strategy")


@dataclass
class Recipe:
    """The protocol runs of one recipe: mIoU by (sequence, seed), and the settings that set it apart."""

    settings: dict[str, Any]
    scores: dict[tuple[str, int], float] = field(default_factory=dict)
    per_class: dict[tuple[str, int], list[float | None]] = field(default_factory=dict)

    @property
    def sequences(self) -> list[str]:
        return sorted({sequence for sequence, _ in self.scores})

    @property
    def seeds(self) -> list[int]:
        return sorted({seed for _, seed in self.scores})

    def complete_seeds(self) -> list[int]:
        """Seeds with a run on every held-out sequence: only these enter the mean."""
        return [s for s in self.seeds if all((q, s) in self.scores for q in self.sequences)]

    def seed_means(self) -> dict[int, float]:
        return {s: float(np.mean([self.scores[(q, s)] for q in self.sequences])) for s in self.complete_seeds()}

    def sequence_means(self) -> dict[str, float]:
        seeds = self.complete_seeds()
        return {q: float(np.mean([self.scores[(q, s)] for s in seeds])) for q in self.sequences} if seeds else {}

    def class_means(self) -> list[float | None]:
        """Per-class IoU averaged over every complete (sequence, seed) run; None where a class never showed."""
        rows = [self.per_class[(q, s)] for q in self.sequences for s in self.complete_seeds()]
        columns = zip(*rows, strict=True) if rows else []
        return [None if any(v is None for v in column) else float(np.mean(column)) for column in columns]

    def summary(self) -> dict[str, Any]:
        means = self.seed_means()
        values = list(means.values())
        return {
            "settings": self.settings,
            "held_out_sequences": self.sequences,
            "seeds": sorted(means),
            "mean_miou": float(np.mean(values)) if values else None,
            "spread": float(max(values) - min(values)) if len(values) > 1 else None,
            "by_sequence": self.sequence_means(),
            "by_seed": {str(k): v for k, v in means.items()},
            "class_iou": self.class_means(),
        }


def _recipe_key(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k not in (*PER_RUN, "kind", "version")}, sort_keys=True)


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
        config = read_run_config(run)
        sequence = config.get("held_out_sequence")
        best = Path(run) / "best.json"
        if not sequence:
            raise SegrefineError(f"{run} is not a protocol run (no held_out_sequence); train it with "
                                 "--set held_out_sequence=NAME")
        if not best.is_file():
            raise SegrefineError(f"{run} has no finished epoch yet (no best.json); let it finish or leave it out")
        record = json.loads(best.read_text())
        key = _recipe_key(config)
        configs.setdefault(key, _flatten(json.loads(key)))
        recipe = grouped.setdefault(key, Recipe({}))
        recipe.scores[(sequence, config["seed"])] = record["held_out_miou"]
        recipe.per_class[(sequence, config["seed"])] = record["held_out_iou"]
    def items(config: dict[str, Any]) -> set[tuple[str, str]]:
        return {(k, json.dumps(v)) for k, v in config.items()}

    shared = set.intersection(*(items(c) for c in configs.values())) if configs else set()
    for key, recipe in grouped.items():
        recipe.settings = ({k: v for k, v in configs[key].items() if (k, json.dumps(v)) not in shared}
                           or {"recipe": "as configured"})
    return list(grouped.values())


def format_recipes(recipes: list[Recipe], class_names: list[str] | None = None) -> str:
    """A plain-text table: one line per recipe, then per-sequence means and the classes."""
    lines = []
    for recipe in recipes:
        s = recipe.summary()
        if s["mean_miou"] is None:
            lines.append(f"{s['settings']}: no seed has a run on every held-out sequence yet")
            continue
        spread = "n/a (one seed)" if s["spread"] is None else f"{s['spread']:.4f}"
        lines.append(f"{s['settings']}: mean held-out mIoU {s['mean_miou']:.4f} over {len(s['held_out_sequences'])} "
                     f"sequence(s) x {len(s['seeds'])} seed(s), spread between seeds {spread}")
        lines.append("    by sequence: " + ", ".join(f"{q} {v:.4f}" for q, v in s["by_sequence"].items()))
        if class_names:
            lines.append("    by class: " + ", ".join(f"{n} {'-' if v is None else f'{v:.3f}'}"
                                                  for n, v in zip(class_names, s["class_iou"], strict=False)))
    return "\n".join(lines)
