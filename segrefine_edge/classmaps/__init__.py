"""Class maps: score a model trained on one label set against a dataset with another.

A class map is a JSON object from the model's class names to the dataset's class names;
``null`` (or a model class left out) means the model's class has no counterpart, and a pixel
predicted as it counts as a miss. Built-in maps can be named instead of given as a path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segrefine_edge.errors import DatasetError

BUILTIN = {p.stem.replace("_to_", "-"): p for p in Path(__file__).parent.glob("*_to_*.json")}
NO_CLASS = 65535


def load_class_map(name_or_path: str) -> tuple[str, dict[str, str | None]]:
    """(origin, {model class: dataset class or None}) from a built-in name or a JSON file."""
    path = BUILTIN.get(name_or_path, Path(name_or_path))
    try:
        mapping = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"class map {name_or_path} not found; give a JSON file or one of: "
                           f"{', '.join(sorted(BUILTIN))}") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"class map {path} is not valid JSON ({exc})") from exc
    if not isinstance(mapping, dict) or not all(isinstance(v, str | None) for v in mapping.values()):
        raise DatasetError(f"class map {path} must be a JSON object of model class -> dataset class (or null)")
    return str(path), mapping


def _index(names: list[str], name: str) -> int | None:
    lowered = [n.lower() for n in names]
    return lowered.index(name.lower()) if name.lower() in lowered else None


def lookup_table(mapping: dict[str, str | None], model_classes: list[str], dataset_classes: list[str],
                 origin: str) -> np.ndarray:
    """An array ``table[model label] = dataset label`` (NO_CLASS where nothing matches).

    Every name in the map must be a class of the model (keys) or of the dataset (values);
    a typo would otherwise silently score a class as always wrong.
    """
    table = np.full(max(len(model_classes), 256), NO_CLASS, dtype=np.uint16)
    for model_name, dataset_name in mapping.items():
        m = _index(model_classes, model_name)
        if m is None:
            raise DatasetError(f"class map {origin} names '{model_name}', which is not a class of the model "
                               f"({', '.join(model_classes)})")
        if dataset_name is None:
            continue
        d = _index(dataset_classes, dataset_name)
        if d is None:
            raise DatasetError(f"class map {origin} maps to '{dataset_name}', which is not a class of the dataset "
                               f"({', '.join(dataset_classes)})")
        table[m] = d
    return table
