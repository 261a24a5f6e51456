"""`segrefine-edge convert` end to end on a tiny run folder, and `check-edgetpu` on real models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from segrefine_edge.cli import main
from segrefine_edge.contract import read_embedded_metadata
from segrefine_edge.edgetpu import check_edgetpu
from segrefine_edge.errors import ModelError
from segrefine_edge.segmenter import Segmenter

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.train

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
                  "Bicyclist"]


def _convert(*args: str):
    return CliRunner().invoke(main, ["convert", *args])


def test_float32_export_matches_keras_and_carries_the_contract(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "tiny_float32.tflite"
    result = _convert(str(tiny_run), "--to", "float32", "--out", str(out), "--val-count", "4")
    assert result.exit_code == 0, result.output
    meta = read_embedded_metadata(out)
    assert meta["labels"] == CAMVID_CLASSES and meta["input_hw"] == [64, 96]
    assert meta["info"]["validation"]["pixel_agreement_with_float"] > 0.999
    segmenter = Segmenter.open(out)
    assert segmenter.contract.labels == CAMVID_CLASSES
    assert list(segmenter.output.shape[1:3]) == [16, 24]          # logits at a quarter of the input
    assert "validation on 4 images" in result.output


@pytest.mark.parametrize(("target", "most", "weights_type"), [("float16", 0.6, np.float16), ("dynamic", 0.4, np.int8)])
def test_float16_and_dynamic_targets_shrink_the_weights_and_keep_the_answers(tiny_run: Path, tmp_path: Path,
                                                                            target: str, most: float,
                                                                            weights_type: type):
    """float16 halves the weights (dequantised in the graph), dynamic-range stores them as int8;
    both keep float input and output and, validated against Keras, nearly every pixel's label."""
    from segrefine_edge.backend import resolve_runtime
    from segrefine_edge.edgetpu import ops_details

    reference = tmp_path / "tiny_float32.tflite"
    assert _convert(str(tiny_run), "--to", "float32", "--out", str(reference), "--val-count", "0").exit_code == 0
    out = tmp_path / f"tiny_{target}.tflite"
    result = _convert(str(tiny_run), "--to", target, "--out", str(out), "--val-count", "4")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size < most * reference.stat().st_size
    meta = read_embedded_metadata(out)
    assert meta["labels"] == CAMVID_CLASSES
    # the tiny model's seeded weights keep 0.9964 of its labels under dynamic range (0.968-0.998 over seeds 0-7)
    assert meta["info"]["validation"]["pixel_agreement_with_float"] > 0.99
    segmenter = Segmenter.open(out)
    assert segmenter.input.dtype == np.float32 and segmenter.output.dtype == np.float32
    _, interpreter_cls, _ = resolve_runtime("auto")
    interpreter = interpreter_cls(model_path=str(out))
    assert weights_type in {tensor["dtype"] for tensor in interpreter.get_tensor_details()}
    assert "CONV_2D" in {op["op_name"] for op in ops_details(interpreter)}
    labels = segmenter.segment(np.full((72, 100, 3), 90, np.uint8))
    assert labels.shape == (72, 100) and labels.max() < 11


def test_conversion_reports_calibration_and_validation_progress(tiny_run: Path, tmp_path: Path):
    from segrefine_edge.conversion.export import ExportOptions, export

    seen = []
    options = ExportOptions("int8", tmp_path / "m.tflite", calib_count=3, val_count=2,
                            progress=lambda what, done, total: seen.append((what, done, total)))
    export(tiny_run, options)
    assert ("calibrating", 3, 3) in seen and seen[-1] == ("validating", 2, 2)
    assert [d for w, d, _ in seen if w == "validating"] == [1, 2]


def test_edgetpu_target_is_full_int8_and_every_op_is_mappable(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "tiny_edgetpu-ready.tflite"
    result = _convert(str(tiny_run), "--to", "edgetpu", "--out", str(out), "--calib-count", "4", "--val-count", "0")
    assert result.exit_code == 0, result.output
    report = check_edgetpu(out)
    assert report.findings == [], report.format()
    segmenter = Segmenter.open(out)
    assert segmenter.input.dtype == np.uint8 and segmenter.output.dtype == np.uint8
    assert not {"SPACE_TO_BATCH_ND", "TILE", "SHAPE"} & set(report.ops)
    check = _convert("check-edgetpu", str(out))
    assert check.exit_code == 0 and f"{len(report.ops)} would run on the EdgeTPU" in check.output


def test_int8_labels_output(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "tiny_int8.tflite"
    result = _convert(str(tiny_run), "--to", "int8", "--fuse-argmax", "--out", str(out), "--calib-count", "4",
                      "--val-count", "2", "--max-drop", "1")
    assert result.exit_code == 0, result.output
    segmenter = Segmenter.open(out)
    assert segmenter.contract.output_kind == "labels"
    assert segmenter.input.dtype == np.uint8


def test_check_edgetpu_finds_argmax_on_corals_model(peers: Path):
    result = _convert("check-edgetpu", str(peers / "coral" / "deeplabv3_mnv2_pascal_quant.tflite"))
    assert result.exit_code == 1
    assert "falls back to the CPU from op 71 (ARG_MAX)" in result.output
    compiled = _convert("check-edgetpu", str(peers / "coral" / "deeplabv3_mnv2_pascal_quant_edgetpu.tflite"))
    assert compiled.exit_code == 0 and "already compiled" in compiled.output


def test_the_private_op_list_is_read_in_one_place_that_fails_clearly(peers: Path):
    """LiteRT lists a graph's ops only through the private _get_ops_details."""
    from segrefine_edge.backend import resolve_runtime
    from segrefine_edge.edgetpu import ops_details

    _, interpreter_cls, _ = resolve_runtime("auto")
    interpreter = interpreter_cls(model_path=str(peers / "coral" / "deeplabv3_mnv2_pascal_quant.tflite"))
    names = [op["op_name"] for op in ops_details(interpreter)]
    assert names[-1] == "ARG_MAX" and "CONV_2D" in names
    with pytest.raises(ModelError, match="_get_ops_details"):
        ops_details(object())


def test_bad_inputs_get_one_line(tiny_run: Path, tmp_path: Path):
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    for args, expected in [
        ((str(tmp_path / "missing"),), "does not exist"),
        ((str(text),), "not a loadable Keras model"),
        ((str(tiny_run), "--calib-data", str(tmp_path)), "no calibration images"),
        ((str(tiny_run), "--input-size", "70x96"), "divisible by the output stride"),
    ]:
        result = _convert(*args, "--out", str(tmp_path / "x.tflite"))
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output and "Traceback" not in result.output


def test_int8_with_float_layers(tiny_run: Path, tmp_path: Path):
    out = tmp_path / "tiny_int8_f2.tflite"
    result = _convert(str(tiny_run), "--to", "int8", "--float-layers", "2", "--out", str(out), "--calib-count", "4",
                      "--val-count", "2", "--max-drop", "1")
    assert result.exit_code == 0, result.output
    assert read_embedded_metadata(out)["info"]["float_layers"] == 2
    report = check_edgetpu(out)
    float_compute = {f.op for f in report.findings} - {"QUANTIZE", "DEQUANTIZE"}
    assert float_compute, report.format()                    # layers really left in float, not just the I/O


def test_an_op_without_a_tflite_kernel_is_named(tmp_path: Path):
    """keras.ops.argmax lowers through tf.BitwiseAnd, which TFLite has no builtin for."""
    import keras

    from segrefine_edge.conversion.quantize import to_tflite
    from segrefine_edge.errors import ModelError

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.ops.argmax(keras.layers.Conv2D(4, 1)(inputs), axis=-1))
    calibration = [np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)]
    with pytest.raises(ModelError, match="BitwiseAnd"):
        to_tflite(model, "int8", calibration, labels_output=True)
