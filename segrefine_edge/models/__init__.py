"""Models that ship inside the package, with their model cards beside them."""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent
DEFAULT_SEGMENTER = "camvid_deeplabv3plus_mnv2_int8.tflite"
DEFAULT_REFINER = "camvid_refiner_temporal_int8.tflite"  # trained on the default segmenter's int8 outputs


def default_model_path() -> Path | None:
    """The shipped default segmenter, or None in a build that has none."""
    path = MODELS_DIR / DEFAULT_SEGMENTER
    return path if path.is_file() else None


def default_refiner_path() -> Path | None:
    """The refiner trained for the default segmenter (it only fits that segmenter's outputs)."""
    path = MODELS_DIR / DEFAULT_REFINER
    return path if path.is_file() else None
