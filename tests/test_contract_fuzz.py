"""A model file is untrusted input: the contract appended to it is parsed with limits, and
damage of any kind is one ModelError, never another exception or a memory blow-up."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from segrefine_edge.contract import METADATA_NAME, embed_metadata, read_embedded_metadata
from segrefine_edge.errors import ModelError
from segrefine_edge.models import default_refiner_path
from segrefine_edge.segmenter import Segmenter


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return default_refiner_path().read_bytes()


def _graph(data: bytes) -> bytes:
    """The TFLite part, without the appended zip."""
    return data[: data.rindex(b"PK\x03\x04")]


def _read(tmp_path: Path, data: bytes, name: str = "m.tflite"):
    path = tmp_path / name
    path.write_bytes(data)
    try:
        return read_embedded_metadata(path)
    except ModelError:
        return "refused"


def test_truncated_and_garbled_contracts_are_refused_or_ignored_never_a_crash(tmp_path: Path, model_bytes: bytes):
    start = model_bytes.rindex(b"PK\x03\x04")
    rng = np.random.default_rng(0)
    outcomes = set()
    for trial in range(300):
        data = bytearray(model_bytes)
        if trial % 3 == 0:
            data = data[: int(rng.integers(start, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 8))):
                data[int(rng.integers(start, len(data)))] = int(rng.integers(0, 256))
        result = _read(tmp_path, bytes(data))
        outcomes.add("refused" if result == "refused" else "none" if result is None else "read")
    # any other exception would have escaped _read and failed the test; some damage must be noticed
    assert outcomes & {"refused", "none"}


def test_a_zip_bomb_in_the_contract_stops_at_the_limit(tmp_path: Path, model_bytes: bytes):
    buffer = io.BytesIO(_graph(model_bytes))
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(METADATA_NAME, b" " * (200 << 20))      # 200 MB of spaces, about 200 KB compressed
    assert len(buffer.getvalue()) < len(model_bytes) + (1 << 20)
    path = tmp_path / "bomb.tflite"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(ModelError, match="not a model contract"):
        read_embedded_metadata(path)


@pytest.mark.parametrize(("field", "value"), [
    ("labels", 5), ("labels", [1, 2]), ("palette", [[1, 2]]), ("palette", [[0, 0, 999]]), ("input_hw", "abc"),
    ("input_hw", [0, 10]), ("void", "x"), ("role", ["segmenter"]), ("input_scale", True),
])
def test_contract_values_of_the_wrong_type_are_one_line(tmp_path: Path, model_bytes: bytes, field: str, value):
    meta = read_embedded_metadata(default_refiner_path())
    path = tmp_path / "edited.tflite"
    path.write_bytes(embed_metadata(_graph(model_bytes), {**meta, field: value}))
    with pytest.raises(ModelError, match=f"field '{field}'"):
        Segmenter.open(path)


def test_deeply_nested_json_is_refused(tmp_path: Path, model_bytes: bytes):
    buffer = io.BytesIO(_graph(model_bytes))
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(METADATA_NAME, "[" * 100_000 + "]" * 100_000)
    assert _read(tmp_path, buffer.getvalue()) == "refused"


def test_attach_contract_restores_what_edgetpu_compiler_drops(tmp_path: Path, model_bytes: bytes):
    """compile.sh copies the ready model's contract onto the compiled one, replacing any it has."""
    import subprocess
    import sys

    ready = tmp_path / "m_edgetpu-ready.tflite"
    ready.write_bytes(model_bytes)
    compiled = tmp_path / "m_edgetpu.tflite"
    compiled.write_bytes(_graph(model_bytes))                 # what the compiler leaves: the graph alone
    code = "import sys; sys.modules['tensorflow'] = None\nfrom segrefine_edge.cli import run\nrun()"
    for _ in range(2):                                          # a second time replaces, never stacks
        result = subprocess.run([sys.executable, "-c", code, "convert", "attach-contract", str(ready), str(compiled)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    assert read_embedded_metadata(compiled) == read_embedded_metadata(ready)
    assert compiled.read_bytes().count(b"metadata.json") == ready.read_bytes().count(b"metadata.json")
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(_graph(model_bytes))
    refused = subprocess.run([sys.executable, "-c", code, "convert", "attach-contract", str(bare), str(compiled)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "carries no model contract" in refused.stderr
