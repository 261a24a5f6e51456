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
import zlib
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


MAX_METADATA_BYTES = 1 << 20   # a model's contract is a few KB; more is a damaged or hostile file


def read_embedded_metadata(path: str | Path) -> dict[str, Any] | None:
    """``metadata.json`` from a zip appended to the model, or the ``MODEL.json`` sidecar.

    A model file is untrusted input: the member is read at most MAX_METADATA_BYTES (a zip bomb
    stops there), and a damaged zip or JSON is one ModelError line.
    """
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        if sidecar.stat().st_size > MAX_METADATA_BYTES:
            raise ModelError(f"model metadata {sidecar} is over {MAX_METADATA_BYTES >> 10} KB; it is not a model contract")
        return parse_metadata(sidecar.read_bytes(), sidecar)
    raw = _zip_member(Path(path).read_bytes(), METADATA_NAME, path)
    return None if raw is None else parse_metadata(raw, path)


def _zip_member(data: bytes, name: str, origin: Path) -> bytes | None:
    """``name`` from the zip appended to ``data``, read with a size limit; None when there is none."""
    if b"PK\x05\x06" not in data[-65536:]:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if name not in archive.namelist():
                return None
            with archive.open(name) as member:
                raw = member.read(MAX_METADATA_BYTES + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, ValueError) as exc:
        raise ModelError(f"the contract appended to {origin} is damaged ({type(exc).__name__}); "
                         "re-export the model or pass its contract with --labels and friends") from exc
    if len(raw) > MAX_METADATA_BYTES:
        raise ModelError(f"{name} in {origin} is over {MAX_METADATA_BYTES >> 10} KB; it is not a model contract")
    return raw


def embed_metadata(tflite: bytes, metadata: dict[str, Any]) -> bytes:
    """The model with ``metadata.json`` in an appended zip: TFLite ignores trailing bytes,
    and any zip reader (ours, MediaPipe's tooling, ``unzip -l``) finds the file."""
    buffer = io.BytesIO()
    buffer.write(tflite)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA_NAME, json.dumps(metadata, indent=1))
    return buffer.getvalue()


def attach_contract(source: Path, target: Path) -> None:
    """Append ``source``'s embedded contract to ``target`` (replacing one it already carries),
    atomically; ModelError when ``source`` has none or ``target`` is no TFLite model."""
    from segrefine_edge.atomic import write_atomic
    from segrefine_edge.backend import read_model_bytes

    meta = read_embedded_metadata(source)
    if meta is None:
        raise ModelError(f"{source} carries no model contract to copy; pass the model `convert` wrote")
    data = read_model_bytes(target)
    end = data.rfind(b"PK\x03\x04")
    graph = data[:end] if end > 0 and _zip_member(data, METADATA_NAME, target) is not None else data
    write_atomic(target, embed_metadata(graph, meta))


def parse_metadata(raw: bytes | str, origin: Path) -> dict[str, Any]:
    """A contract's JSON, from any place a model carries it (appended zip, sidecar, ONNX metadata):
    refused past MAX_METADATA_BYTES, and one ModelError line when it is not a JSON object."""
    if len(raw) > MAX_METADATA_BYTES:
        raise ModelError(f"model metadata in {origin} is over {MAX_METADATA_BYTES >> 10} KB; it is not a model contract")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"model metadata in {origin} is not valid JSON ({str(exc)[:80]})") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"model metadata in {origin} must be a JSON object")
    return meta


def _embedded_labels(path: Path) -> list[str] | None:
    """labels.txt in an appended zip (MediaPipe's way)."""
    raw = _zip_member(path.read_bytes(), "labels.txt", path)
    if raw is None:
        return None
    try:
        return [line.strip() for line in raw.decode().splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise ModelError(f"labels.txt in {path} is not text; the model file is damaged") from exc


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


def _is_colour(value: Any) -> bool:
    return (isinstance(value, list | tuple) and len(value) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# What each field must hold, checked before it is set: metadata comes from a file anyone can edit
_FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "role": (lambda v: isinstance(v, str), "a string"),
    "labels": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of names"),
    "palette": (lambda v: isinstance(v, list) and all(_is_colour(c) for c in v), "a list of [r, g, b] in 0-255"),
    "void": (_is_int, "a whole number"),
    "input_hw": (lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(_is_int(d) and d > 0 for d in v),
                 "[height, width]"),
    "color_order": (lambda v: isinstance(v, str), "RGB or BGR"),
    "input_scale": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "input_offset": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "output_kind": (lambda v: isinstance(v, str), "a string"),
    "refiner_inputs": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of names"),
    "input_range": (lambda v: isinstance(v, str), "a string"),
}


def apply_fields(contract: ModelContract, values: dict[str, Any], origin: str) -> None:
    """Set contract fields from a metadata/catalogue/override dict; unknown keys and values of
    the wrong type are an error."""
    names = {f.name for f in dataclasses.fields(ModelContract)}
    for key, value in values.items():
        if value is None or key in INFO_FIELDS:
            continue
        check, expected = _FIELD_TYPES.get(key, (lambda _v: True, ""))
        if not check(value):
            raise ModelError(f"model contract field '{key}' from {origin} must be {expected}; got {str(value)[:60]}")
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
    meta = backend.embedded_metadata()
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
