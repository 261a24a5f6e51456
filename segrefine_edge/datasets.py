"""Find (image, mask) pairs in the dataset layouts that `eval` and `train` both read.

Layouts, tried in this order:
- CamVid/SegNet: ``ROOT/<split>/`` images beside ``ROOT/<split>annot/`` masks;
- VOC: ``ROOT/JPEGImages``, ``ROOT/SegmentationClass``, ``ROOT/ImageSets/Segmentation/<split>.txt``;
- plain pairs: ``ROOT/images`` and ``ROOT/masks`` (or ``ROOT/<split>/images`` and
  ``ROOT/<split>/masks``), matched by file stem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from segrefine_edge.errors import DatasetError
from segrefine_edge.palettes import VOC_CLASSES, as_palette
from segrefine_edge.pngio import read_labels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Pair:
    """One labelled example: an image file and its mask of class indices (same basename)."""

    image: Path
    mask: Path


@dataclass(frozen=True)
class ClassInfo:
    """Class names, RGB palette and void index read from a dataset's ``classes.json``."""

    names: list[str]
    palette_rgb: list[tuple[int, int, int]] | None
    void: int | None


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def _match(images: Path, masks: Path) -> list[Pair]:
    """Pair by stem; any image without a mask (or mask without an image) is an error, not a skip."""
    imgs, msks = _images_in(images), _images_in(masks)
    missing_masks = sorted(set(imgs) - set(msks))
    missing_images = sorted(set(msks) - set(imgs))
    if missing_masks or missing_images:
        example = (missing_masks or missing_images)[0]
        raise DatasetError(
            f"{images} and {masks} do not match: {len(missing_masks)} image(s) without a mask and "
            f"{len(missing_images)} mask(s) without an image (e.g. '{example}'); "
            "give every image a mask with the same name"
        )
    return [Pair(imgs[k], msks[k]) for k in sorted(imgs)]


def find_pairs(root: str | Path, split: str = "val") -> list[Pair]:
    """Return the sorted pairs of ``split`` under ``root``; raise DatasetError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; pass --data DIR with images and masks")
    if (root / split).is_dir() and (root / f"{split}annot").is_dir():
        pairs = _match(root / split, root / f"{split}annot")
    elif (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        pairs = _voc_pairs(root, split)
    elif (root / split / "images").is_dir() and (root / split / "masks").is_dir():
        pairs = _match(root / split / "images", root / split / "masks")
    elif (root / "images").is_dir() and (root / "masks").is_dir():
        pairs = _match(root / "images", root / "masks")
    else:
        raise DatasetError(
            f"{root} has no known layout for split '{split}': expected {split}/ + {split}annot/ (CamVid), "
            "JPEGImages/ + SegmentationClass/ (VOC) or images/ + masks/"
        )
    if not pairs:
        raise DatasetError(f"{root} split '{split}' holds no image/mask pairs; check --data and --split")
    return pairs


def unsplit_layout_note(root: str | Path, split: str) -> str | None:
    """A note when ``root`` is a plain images/ + masks/ layout, which has no splits, so ``split``
    names nothing and every pair is used (said, never silent)."""
    root = Path(root)
    named = (root / split).is_dir() or (root / "JPEGImages").is_dir()
    if not named and (root / "images").is_dir() and (root / "masks").is_dir():
        return (f"{root} holds one images/ + masks/ set and no splits: split '{split}' names nothing, so every "
                f"pair in it is used (for splits, use {root}/<split>/images and {root}/<split>/masks)")
    return None


def _voc_pairs(root: Path, split: str) -> list[Pair]:
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise DatasetError(f"VOC layout at {root} has no {listing.relative_to(root)}; pick an existing --split")
    images = _images_in(root / "JPEGImages")
    masks = _images_in(root / "SegmentationClass")
    pairs = []
    for stem in listing.read_text().split():
        if stem not in images or stem not in masks:
            raise DatasetError(f"VOC split '{split}' names '{stem}', which lacks an image or a mask")
        pairs.append(Pair(images[stem], masks[stem]))
    return pairs


def read_class_info(root: str | Path) -> ClassInfo | None:
    """Read ``classes.json`` (names, palette_rgb, void) from a dataset root, if it has one."""
    path = Path(root) / "classes.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
        names = [str(n) for n in meta["classes"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is not a valid classes file ({exc}); it needs a 'classes' list") from exc
    palette = meta.get("palette_rgb")
    return ClassInfo(
        names=names,
        palette_rgb=[tuple(int(v) for v in c) for c in palette] if palette else None,
        void=meta.get("void"),
    )


@dataclass(frozen=True)
class DatasetClasses:
    """The label space predictions are scored in."""

    names: list[str]
    void: int | None
    palette: np.ndarray


def dataset_classes(root: str | Path | None, fallback: list[str]) -> DatasetClasses:
    """Classes from the dataset's ``classes.json``; VOC's 21 classes (void 255) for a VOC
    layout; else (or with no dataset) the first model's classes."""
    info = read_class_info(root) if root else None
    if info is not None:
        return DatasetClasses(info.names, info.void, as_palette(info.palette_rgb, len(info.names)))
    if root and (Path(root) / "SegmentationClass").is_dir():
        return DatasetClasses(list(VOC_CLASSES), 255, as_palette(None, len(VOC_CLASSES)))
    if not fallback:
        raise DatasetError(f"{root} has no classes.json and the model names no classes; add a classes.json "
                           "with a 'classes' list (and 'void') to the dataset")
    return DatasetClasses(list(fallback), None, as_palette(None, len(fallback)))


def read_pair(pair: Pair, classes: DatasetClasses) -> tuple[np.ndarray, np.ndarray]:
    """The BGR image and its mask, checked: same size, every value a class or void."""
    image = cv2.imread(str(pair.image), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"image {pair.image} cannot be read; is it an image file?")
    mask = read_labels(pair.mask)
    if mask.ndim != 2:
        raise DatasetError(f"mask {pair.mask} has {mask.shape[2]} channels; masks must hold one class index per pixel")
    if mask.shape != image.shape[:2]:
        raise DatasetError(f"mask {pair.mask.name} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                           f"{image.shape[1]}x{image.shape[0]}; masks must match their images")
    values = np.unique(mask)
    n = len(classes.names)
    bad = [int(v) for v in values if v >= n and v != classes.void]
    if bad:
        void = f" and void is {classes.void}" if classes.void is not None else ""
        raise DatasetError(f"mask {pair.mask.name} holds value {bad[0]}, outside the {n} classes (0-{n - 1}){void}; "
                           "check --data and the dataset's classes.json")
    return image, mask
