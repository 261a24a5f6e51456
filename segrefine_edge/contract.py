"""The model contract: what a model's input expects and what its output means.

Sources, later ones overriding earlier ones:
1. what the tensors say (input size, dtype and quantisation; output dtype and channels);
2. the catalogue of known third-party models (Coral, TFLite example, MediaPipe), by file name;
3. our own metadata: ``metadata.json`` in a zip appended to the ``.tflite`` (read with stdlib
   zipfile, as MediaPipe ships labels) or a sidecar ``MODEL.json`` beside it;
4. explicit overrides (CLI flags).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segrefine_edge.backend import Backend, TensorInfo
from segrefine_edge.errors import ModelError
from segrefine_edge.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, VOC_CLASSES, as_palette

ROLES = ("segmenter", "refiner", "fused")
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid", "labels")
INPUT_RANGES = {"0,1": (1 / 255.0, 0.0), "-1,1": (1 / 127.5, -1.0), "0,255": (1.0, 0.0)}
METADATA_NAME = "metadata.json"
# Metadata keys that describe a model (provenance, measured numbers) without changing how it runs.
INFO_FIELDS = ("name", "info")


@dataclass
class ModelContract:
    """How to feed a model and read its output.

    Input: ``real = pixel * input_scale + input_offset`` for RGB (or BGR) pixels in 0-255;
    a quantised input tensor then gets ``round(real / scale + zero_point)``.
    """

    role: str = "segmenter"
    labels: list[str] = field(default_factory=list)
    palette: list[tuple[int, int, int]] | None = None
    void: int | None = None
    input_hw: tuple[int, int] = (0, 0)
    color_order: str = "RGB"
    input_scale: float = 1 / 127.5
    input_offset: float = -1.0
    output_kind: str = "logits"
    refiner_inputs: list[str] | None = None
    source: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def palette_array(self) -> np.ndarray:
        """(num_classes or 256, 3) RGB palette; label models of unknown class count get 256 colours."""
        return as_palette(self.palette, max(self.num_classes, 1) if self.labels else 256)

    def class_index(self, name: str) -> int:
        """Index of a class by name (case-insensitive) or by number; ModelError names the choices."""
        lowered = [n.lower() for n in self.labels]
        if name.lower() in lowered:
            return lowered.index(name.lower())
        if name.isdigit() and (not self.labels or int(name) < len(self.labels)):
            return int(name)
        raise ModelError(f"class '{name}' is not one of this model's classes: {', '.join(self.labels) or 'none known'}")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        return data


# Third-party models we have verified, keyed by file-name pattern (the files in ../shared/peers).
CATALOGUE: dict[str, dict[str, Any]] = {
    "deeplab_mobilenet_edgetpu_slim_cityscapes*": {
        "labels": CITYSCAPES_CLASSES, "palette": CITYSCAPES_PALETTE, "output_kind": "labels",
    },
    "deeplabv3_mnv2*pascal*": {"labels": VOC_CLASSES, "output_kind": "labels"},
    "deeplabv3_257_mv_gpu*": {"labels": VOC_CLASSES, "input_range": "-1,1", "output_kind": "logits"},
    "selfie_segmentation*": {"labels": ["background", "person"], "input_range": "0,1", "output_kind": "sigmoid"},
}


def read_embedded_metadata(path: str | Path) -> dict[str, Any] | None:
    """``metadata.json`` from a zip appended to the model, or the ``MODEL.json`` sidecar."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return _parse_metadata(sidecar.read_bytes(), sidecar)
    data = path.read_bytes()
    if b"PK\x05\x06" not in data[-65536:]:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if METADATA_NAME not in archive.namelist():
                return None
            return _parse_metadata(archive.read(METADATA_NAME), path)
    except zipfile.BadZipFile:
        return None


def embed_metadata(tflite: bytes, metadata: dict[str, Any]) -> bytes:
    """The model with ``metadata.json`` in an appended zip: TFLite ignores trailing bytes,
    and any zip reader (ours, MediaPipe's tooling, ``unzip -l``) finds the file."""
    buffer = io.BytesIO()
    buffer.write(tflite)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA_NAME, json.dumps(metadata, indent=1))
    return buffer.getvalue()


def _parse_metadata(raw: bytes, origin: Path) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ModelError(f"model metadata in {origin} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"model metadata in {origin} must be a JSON object")
    return meta


def _embedded_labels(path: Path) -> list[str] | None:
    """labels.txt in an appended zip (MediaPipe's way)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "labels.txt" in archive.namelist():
                return [line.strip() for line in archive.read("labels.txt").decode().splitlines() if line.strip()]
    except zipfile.BadZipFile:
        pass
    return None


def _from_tensors(contract: ModelContract, image: TensorInfo, output: TensorInfo) -> None:
    if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3:
        raise ModelError(f"model input has shape {list(image.shape)}, not an image [1, H, W, 3]; "
                         "segrefine-edge runs image segmentation models only")
    contract.input_hw = (image.shape[1], image.shape[2])
    if image.quantized:
        # Assume the quantised range covers the pixel range: feeding raw pixels needs no arithmetic.
        info = np.iinfo(image.dtype)
        contract.input_scale = (info.max - info.min) * image.scale / 255.0
        contract.input_offset = (info.min - image.zero_point) * image.scale
    integer_output = np.issubdtype(output.dtype, np.integer) and not output.quantized
    channels = output.shape[-1] if len(output.shape) == 4 else 1
    if integer_output or len(output.shape) == 3:
        contract.output_kind = "labels"
    elif channels == 1:
        contract.output_kind = "sigmoid"
        contract.labels = ["background", "foreground"]
    else:
        contract.output_kind = "logits"
        contract.labels = [f"class{i}" for i in range(channels)]
    contract.source.append("tensors")


def apply_fields(contract: ModelContract, values: dict[str, Any], origin: str) -> None:
    """Set contract fields from a metadata/catalogue/override dict; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(ModelContract)}
    for key, value in values.items():
        if value is None or key in INFO_FIELDS:
            continue
        if key == "input_range":
            if value not in INPUT_RANGES:
                raise ModelError(f"input range '{value}' from {origin} is not one of {', '.join(INPUT_RANGES)}")
            contract.input_scale, contract.input_offset = INPUT_RANGES[value]
        elif key in names and key != "source":
            setattr(contract, key, tuple(value) if key == "input_hw" else value)
        else:
            raise ModelError(f"unknown model contract field '{key}' in {origin}")
    if contract.role not in ROLES:
        raise ModelError(f"role '{contract.role}' from {origin} is not one of {', '.join(ROLES)}")
    if contract.output_kind not in OUTPUT_KINDS:
        raise ModelError(f"output kind '{contract.output_kind}' from {origin} is not one of {', '.join(OUTPUT_KINDS)}")
    if contract.color_order not in ("RGB", "BGR"):
        raise ModelError(f"colour order '{contract.color_order}' from {origin} must be RGB or BGR")
    contract.source.append(origin)


def resolve_contract(backend: Backend, overrides: dict[str, Any] | None = None) -> ModelContract:
    """Build the contract for a loaded model from every source, in order of authority."""
    contract = ModelContract()
    # A refiner has two inputs in whatever order the converter chose: the image is the RGB one.
    image = next((t for t in backend.inputs if len(t.shape) == 4 and t.shape[-1] == 3), backend.inputs[0])
    _from_tensors(contract, image, backend.outputs[0])
    name = backend.path.name
    for pattern, values in CATALOGUE.items():
        if fnmatch.fnmatch(name, pattern + ".tflite"):
            apply_fields(contract, values, f"catalogue:{pattern}")
            break
    else:
        labels = _embedded_labels(backend.path)
        if labels and contract.output_kind == "sigmoid" and len(labels) == 1:
            contract.labels = ["background", *labels]
    meta = read_embedded_metadata(backend.path)
    if meta:
        apply_fields(contract, meta, "metadata")
    if overrides:
        apply_fields(contract, overrides, "overrides")
    _check_consistency(contract, backend.outputs[0])
    return contract


def _check_consistency(contract: ModelContract, output: TensorInfo) -> None:
    if contract.output_kind in ("logits", "probabilities") and len(output.shape) == 4:
        channels = output.shape[-1]
        if contract.labels and len(contract.labels) != channels:
            raise ModelError(f"model has {channels} output channels but {len(contract.labels)} labels; "
                             "pass a --labels file with one name per channel")


def read_labels_file(path: str | Path) -> list[str]:
    """One class name per line; blank lines are dropped."""
    try:
        return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ModelError(f"cannot read labels file {path}: {exc.strerror}") from exc
