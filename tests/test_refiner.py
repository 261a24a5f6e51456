"""The refiner: starts as the identity, trains for a few steps on a tiny run (CE and GAN), and
the classical guided-filter baseline behaves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segrefine_edge.errors import ModelError
from segrefine_edge.postprocess import labels_at
from segrefine_edge.refiner import GuidedFilterRefiner, open_refiner
from segrefine_edge.scores import ScoreMap

CLI = [sys.executable, "-m", "segrefine_edge"]


def test_guided_filter_snaps_a_blurred_edge_to_the_image_edge():
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[:, 40:] = 255                                          # the true edge is at x = 40
    probs = np.zeros((60, 80, 2), np.float32)
    ramp = np.clip((np.arange(80) - 30) / 20.0, 0, 1)            # a soft edge centred at x = 40, 20 px wide
    probs[..., 1] = ramp
    probs[..., 0] = 1 - ramp
    refined = GuidedFilterRefiner(radius=4, working_width=80).refine(frame, ScoreMap("probabilities", probs))
    p = refined.values[30, :, 1]
    assert p[36] < probs[30, 36, 1] and p[44] > probs[30, 44, 1]  # sharper on both sides of the edge
    labels = labels_at(refined, (80, 60))
    assert (labels[:, :40] == 0).all() and (labels[:, 40:] == 1).all()


def test_open_refiner_names():
    assert open_refiner(None).name == "none"
    assert open_refiner("guided-filter").name == "guided-filter"


@pytest.mark.train
@pytest.mark.parametrize("softmax_stem", [False, True])
def test_generator_starts_as_the_identity(softmax_stem: bool):
    pytest.importorskip("tensorflow")
    from segrefine_edge.training.refiner_net import RefinerConfig, build_generator

    generator = build_generator(RefinerConfig(input_hw=(32, 48), softmax_stem=softmax_stem, logits_stride=1))
    assert any(layer.name == "probabilities" for layer in generator.layers) == softmax_stem
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (2, 32, 48, 3)).astype(np.float32)
    logits = rng.normal(0, 3, (2, 32, 48, 11)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(generator([image, logits])), logits, atol=1e-5)


@pytest.mark.train
def test_half_size_logits_are_upsampled_in_the_graph_as_the_runtime_resizes():
    """A refiner with ``logits_stride`` 2 takes the logits at half its size and starts as
    their bilinear upsampling, the same one OpenCV gives (what a stride-1 refiner is fed)."""
    pytest.importorskip("tensorflow")
    import cv2

    from segrefine_edge.training.refiner_net import RefinerConfig, build_generator

    generator = build_generator(RefinerConfig(input_hw=(32, 48), logits_stride=2))
    assert [tuple(t.shape[1:3]) for t in generator.inputs] == [(32, 48), (16, 24)]
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (1, 32, 48, 3)).astype(np.float32)
    logits = rng.normal(0, 3, (1, 16, 24, 11)).astype(np.float32)
    upsampled = cv2.resize(logits[0], (48, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(np.asarray(generator([image, logits]))[0], upsampled, atol=1e-4)


@pytest.mark.train
def test_a_run_folder_from_before_a_model_option_converts_as_it_was_trained(tmp_path: Path):
    """Run folders written before ``softmax_stem``, ``logits_stride`` and ``head`` existed were
    trained with a softmax stem, full-size logits and a 3x3 full-size layer: their config says
    nothing, the export knows."""
    pytest.importorskip("tensorflow")
    from segrefine_edge.conversion.source import load_source
    from segrefine_edge.training.refiner_net import RefinerConfig, build_generator

    old = RefinerConfig(input_hw=(32, 48), softmax_stem=True, logits_stride=1, head="conv3x3")
    build_generator(old).save_weights(tmp_path / "best.weights.h5")
    model = {"num_classes": 11, "input_hw": [32, 48], "width": 32, "discriminator_width": 64, "temporal": False}
    (tmp_path / "config.json").write_text(json.dumps({"kind": "refiner", "model": model, "segmenter": "nowhere",
                                                      "data": str(tmp_path / "no-data")}))
    source = load_source(tmp_path, None, False)
    assert [tuple(t.shape[1:3]) for t in source.model.inputs] == [(32, 48), (32, 48)]
    assert any(layer.name == "probabilities" for layer in source.model.layers)
    assert source.model.get_layer("d0").kernel_size == (3, 3)


@pytest.mark.train
def test_an_unknown_refiner_head_is_one_line_before_any_run_folder(tiny_run: Path, tmp_path: Path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "refiner"
    result = subprocess.run([*CLI, "train", "refiner", "--segmenter", str(tiny_run), "--data", str(tmp_path),
                             "--out", str(out), "--set", "model.head=wide"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "refiner head 'wide' is not one of pointwise, conv3x3" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


@pytest.mark.train
@pytest.mark.parametrize("adversarial_weight, lovasz_weight, ema_momentum", [("0", "0", "0"), ("0.01", "0.5", "0.9")])
def test_train_refiner_a_few_steps(tiny_run: Path, tmp_path: Path, adversarial_weight: str, lovasz_weight: str,
                                   ema_momentum: str):
    pytest.importorskip("tensorflow")
    data = json.loads((tiny_run / "config.json").read_text())["data"]
    out = tmp_path / "refiner"
    result = subprocess.run([*CLI, "train", "refiner", "--segmenter", str(tiny_run), "--data", data, "--out", str(out),
                             "--steps", "4", "--batch", "2", "--adversarial-weight", adversarial_weight,
                             "--set", "eval_every=2", "--set", "model.input_hw=[32,48]",
                             "--set", f"lovasz_weight={lovasz_weight}", "--set", f"ema_momentum={ema_momentum}",
                             "--set", f"feature_matching_weight={adversarial_weight}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [2, 4]
    assert all(0 <= h["refined_miou"] <= 1 for h in history)
    if adversarial_weight != "0":
        assert all(h["d_loss"] > 0 and h["g_feature_matching"] > 0 for h in history)
    else:
        assert all(h["g_feature_matching"] == 0 for h in history)
    # with weight averaging the raw weights are scored beside the averaged ones that are kept
    assert all(("raw_refined_miou" in h) == (ema_momentum != "0") for h in history)
    assert (out / "best.weights.h5").is_file()


@pytest.mark.train
def test_a_refiner_run_resumes_from_its_checkpoint_and_refuses_a_different_config(tiny_run: Path, tmp_path: Path):
    """The refiner shares the segmenter's run folder: it resumes where its checkpoint left off
    (a finished run trains no further step), and refuses to overwrite or to resume other options."""
    pytest.importorskip("tensorflow")
    data = json.loads((tiny_run / "config.json").read_text())["data"]
    out = tmp_path / "refiner"
    command = [*CLI, "train", "refiner", "--segmenter", str(tiny_run), "--data", data, "--out", str(out),
               "--steps", "4", "--batch", "2", "--set", "eval_every=2", "--set", "model.input_hw=[32,48]"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["version"] >= 1
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "pass --resume" in again.stderr and "Traceback" not in again.stderr
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [json.loads(line)["step"] for line in (out / "history.jsonl").read_text().splitlines()] == [2, 4]
    other = subprocess.run([*command, "--resume", "--seed", "7"], capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "different config" in other.stderr


def _fold_run(tiny_run: Path, folder: Path, held_out: int, held_out_sequence: str | None = None) -> Path:
    """A copy of the tiny segmenter run that says it left fold ``held_out`` of 2 out, or with
    ``held_out_sequence`` that drive."""
    folder.mkdir()
    config = json.loads((tiny_run / "config.json").read_text())
    left_out = {"held_out_sequence": held_out_sequence} if held_out_sequence else {"folds": 2, "held_out": held_out}
    (folder / "config.json").write_text(json.dumps({**config, **left_out}))
    (folder / "best.weights.h5").write_bytes((tiny_run / "best.weights.h5").read_bytes())
    return folder


@pytest.mark.train
def test_refiner_trains_on_held_out_segmenter_outputs_one_run_per_fold(tiny_run: Path, tmp_path: Path):
    """Each fold run gives (and caches) the logits of the training images it left out; a run
    that left nothing out is a one-line error before any refiner run folder."""
    pytest.importorskip("tensorflow")
    data = json.loads((tiny_run / "config.json").read_text())["data"]
    folds = [_fold_run(tiny_run, tmp_path / f"fold{k}", k) for k in (0, 1)]
    command = [*CLI, "train", "refiner", "--segmenter", str(tiny_run), "--data", data, "--steps", "2", "--batch", "2",
               "--set", "eval_every=2", "--set", "model.input_hw=[32,48]", "--set", "heldout_share=1.0"]
    refused = subprocess.run([*command, "--out", str(tmp_path / "refused"), "--heldout-segmenter", str(tiny_run)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "has no held-out fold or drive" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "refused").exists()
    one_fold = subprocess.run([*command, "--out", str(tmp_path / "one"), "--heldout-segmenter", str(folds[0])],
                              capture_output=True, text=True, timeout=300)
    assert one_fold.returncode != 0 and "are in no held-out fold" in one_fold.stderr
    trained = subprocess.run([*command, "--out", str(tmp_path / "run"), "--heldout-segmenter", str(folds[0]),
                              "--heldout-segmenter", str(folds[1])], capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    for index in range(2):                      # two of the four training images each, cached in the refiner's run
        assert np.load(tmp_path / "run" / "inputs" / f"heldout_{index}.npy").shape == (2, 16, 24, 11)
    assert not [p for fold in folds for p in fold.glob("*.npy")]   # nothing written into the segmenters' runs
    assert json.loads((tmp_path / "run" / "config.json").read_text())["heldout_segmenters"] == [str(f) for f in folds]


@pytest.mark.train
def test_under_the_protocol_a_refiner_trains_beside_its_folds_segmenter_and_keeps_the_last_step(
        tiny_run: Path, tiny_camvid: Path, tmp_path: Path):
    """The refiner of fold 0016E5 trains on the other drive, is scored on 0016E5 (mIoU, Boundary F and
    per-class IoU with and without it) and keeps its last step; a segmenter that saw the drive is refused."""
    pytest.importorskip("tensorflow")
    segmenter = _fold_run(tiny_run, tmp_path / "seg_0016E5", 0, held_out_sequence="0016E5")
    command = [*CLI, "train", "refiner", "--segmenter", str(segmenter), "--data", str(tiny_camvid), "--steps", "4",
               "--batch", "2", "--set", "eval_every=2", "--set", "model.input_hw=[32,48]"]
    trained = subprocess.run([*command, "--out", str(tmp_path / "run"), "--set", "held_out_sequence=0016E5",
                              "--set", "capture=0.5"],
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "kept the last step, 4: held-out 0016E5 mIoU" in trained.stdout
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert json.loads((tmp_path / "run" / "best.json").read_text()) == history[-1]
    assert len(history[-1]["segmenter_iou"]) == len(history[-1]["refined_iou"]) == 11
    # the scored split is the four 0016E5 frames, the training split the four 0001TP ones
    assert np.load(tmp_path / "run" / "inputs" / "val.npy").shape[0] == 4
    assert np.load(tmp_path / "run" / "inputs" / "train.npy").shape[0] == 4
    wrong = subprocess.run([*command, "--out", str(tmp_path / "wrong"), "--set", "held_out_sequence=0001TP"],
                           capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "must be the run trained with --set held_out_sequence=0001TP" in wrong.stderr
    assert "left out 0016E5" in wrong.stderr and "Traceback" not in wrong.stderr and not (tmp_path / "wrong").exists()


@pytest.mark.train
def test_a_refiner_final_fit_trains_on_train_and_val_and_keeps_the_last_step(tiny_run: Path, tiny_camvid: Path,
                                                                             tmp_path: Path):
    """The shipped refiner's final fit: the four train and four val images trained on, val scored under a
    name that says it was seen, the last check kept whatever it scored; beside a held-out drive, refused."""
    pytest.importorskip("tensorflow")
    command = [*CLI, "train", "refiner", "--segmenter", str(tiny_run), "--data", str(tiny_camvid), "--steps", "4",
               "--batch", "2", "--set", "eval_every=2", "--set", "model.input_hw=[32,48]", "--set", "final_fit=true"]
    trained = subprocess.run([*command, "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "kept the last step, 4: seen val mIoU" in trained.stdout
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [2, 4]
    assert json.loads((tmp_path / "run" / "best.json").read_text()) == history[-1]
    assert np.load(tmp_path / "run" / "inputs" / "train.npy").shape[0] == 8
    assert np.load(tmp_path / "run" / "inputs" / "val.npy").shape[0] == 4
    # conversion calibrates on the eight images the cache holds, not on the train split's four
    converted = subprocess.run([*CLI, "convert", str(tmp_path / "run"), "--to", "int8", "--out",
                                str(tmp_path / "refiner.tflite"), "--calib-count", "8"],
                               capture_output=True, text=True, timeout=300)
    assert converted.returncode == 0, converted.stderr[-3000:]
    assert (tmp_path / "refiner.tflite").stat().st_size > 0
    both = subprocess.run([*command, "--out", str(tmp_path / "both"), "--set", "held_out_sequence=0016E5"],
                          capture_output=True, text=True, timeout=300)
    assert both.returncode == 2 and "cannot also leave a sequence out" in both.stderr
    assert "Traceback" not in both.stderr and not (tmp_path / "both").exists()


@pytest.mark.train
def test_nested_folds_give_the_refiner_outputs_of_a_segmenter_that_never_saw_the_image_s_drive(
        tiny_run: Path, tiny_camvid: Path, tmp_path: Path):
    """Under the protocol, the refiner of fold 0016E5 trains on 0001TP's images; a segmenter that left
    out both drives gives their real inputs (heldout_share 1). One that saw 0016E5 is refused, since
    the refiner would learn from outputs of a model that knew the drive it is scored on."""
    pytest.importorskip("tensorflow")
    segmenter = _fold_run(tiny_run, tmp_path / "seg_0016E5", 0, held_out_sequence="0016E5")
    nested = _fold_run(tiny_run, tmp_path / "seg_both", 0, held_out_sequence="0001TP,0016E5")
    saw_it = _fold_run(tiny_run, tmp_path / "seg_0001TP", 0, held_out_sequence="0001TP")
    command = [*CLI, "train", "refiner", "--segmenter", str(segmenter), "--data", str(tiny_camvid), "--steps", "2",
               "--batch", "2", "--set", "eval_every=2", "--set", "model.input_hw=[32,48]",
               "--set", "held_out_sequence=0016E5", "--set", "heldout_share=1.0"]
    trained = subprocess.run([*command, "--out", str(tmp_path / "run"), "--heldout-segmenter", str(nested)],
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert np.load(tmp_path / "run" / "inputs" / "heldout_0.npy").shape[0] == 4     # the four 0001TP frames
    refused = subprocess.run([*command, "--out", str(tmp_path / "refused"), "--heldout-segmenter", str(saw_it)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "must have left 0016E5 out too" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "refused").exists()


@pytest.fixture(scope="module")
def tiny_refiner_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A refiner trained for two steps on the tiny segmenter run (shared by the export tests),
    taking the logits at half its size, as the segmenter gives them."""
    pytest.importorskip("tensorflow")
    data = json.loads((tiny_run / "config.json").read_text())["data"]
    refiner_run = tmp_path_factory.mktemp("refiner") / "run"
    trained = subprocess.run([*CLI, "train", "refiner", "--segmenter", str(tiny_run), "--data", data, "--out",
                              str(refiner_run), "--steps", "2", "--batch", "2", "--set", "eval_every=2",
                              "--set", "model.input_hw=[32,48]", "--set", "model.logits_stride=2"],
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return refiner_run


@pytest.fixture(scope="module")
def tiny_int8_segmenter(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny segmenter run converted to int8, as a refiner meets it at run time."""
    return _convert_int8(tiny_run, tmp_path_factory.mktemp("segmenter") / "segmenter.tflite")


def _convert_int8(run: Path, out: Path) -> Path:
    result = subprocess.run([*CLI, "convert", str(run), "--to", "int8", "--out", str(out), "--calib-count", "4",
                             "--val-count", "0"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.train
def test_refiner_converts_to_int8_and_runs_behind_a_segmenter(tiny_run: Path, tiny_refiner_run: Path,
                                                               tiny_int8_segmenter: Path, tmp_path: Path):
    pytest.importorskip("tensorflow")
    import cv2

    from segrefine_edge.pipeline import Pipeline
    from segrefine_edge.refiner import TFLiteRefiner
    from segrefine_edge.segmenter import Segmenter

    data = json.loads((tiny_run / "config.json").read_text())["data"]
    refiner = TFLiteRefiner(_convert_int8(tiny_refiner_run, tmp_path / "refiner.tflite"))
    assert sorted(refiner.order) == ["image", "logits"] and refiner.hw == (32, 48)
    assert refiner._inputs["logits"].shape[1:3] == (16, 24)        # the segmenter's logits go in as they are
    assert {info.dtype for info in refiner._inputs.values()} == {np.dtype(np.int8)}   # no QUANTIZE op in the graph
    frame = cv2.imread(str(sorted(Path(data, "val").iterdir())[0]))
    labels = Pipeline.from_parts(Segmenter.open(tiny_int8_segmenter), refiner).segment(frame).labels
    assert labels.shape == frame.shape[:2] and labels.max() < 11


@pytest.mark.train
def test_refiner_trains_on_a_tflite_segmenter_and_calibrates_from_its_own_run(tiny_run: Path, tiny_int8_segmenter: Path,
                                                                              tmp_path: Path):
    """The int8 segmenter's own outputs (the errors the refiner meets when deployed) are
    cached in the refiner's run, where conversion finds them for calibration."""
    pytest.importorskip("tensorflow")
    from segrefine_edge.refiner import TFLiteRefiner

    data = json.loads((tiny_run / "config.json").read_text())["data"]
    run = tmp_path / "refiner"
    trained = subprocess.run([*CLI, "train", "refiner", "--segmenter", str(tiny_int8_segmenter), "--data", data,
                              "--out", str(run), "--steps", "2", "--batch", "2", "--set", "eval_every=2",
                              "--set", "model.input_hw=[32,48]"], capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert sorted(c.name for c in (run / "inputs").iterdir()) == ["train.npy", "train_images.txt", "val.npy"]
    assert np.load(run / "inputs" / "train.npy").shape == (4, 16, 24, 11)    # at the logits input's size
    listed = (run / "inputs" / "train_images.txt").read_text().splitlines()  # the cache's images, in its order
    assert listed == [str(p.resolve()) for p in sorted((Path(data) / "train").iterdir())]
    assert TFLiteRefiner(_convert_int8(run, tmp_path / "refiner.tflite")).hw == (32, 48)


@pytest.mark.train
@pytest.mark.parametrize("segmenter, message", [("missing.tflite", "does not exist"),
                                                ("CITYSCAPES", "the refiner needs logits or probabilities for 11")])
def test_train_refiner_refuses_an_unusable_segmenter(camvid: Path, cityscapes_model: Path, tmp_path: Path,
                                                     segmenter: str, message: str):
    pytest.importorskip("tensorflow")
    model = str(cityscapes_model) if segmenter == "CITYSCAPES" else str(tmp_path / segmenter)
    result = subprocess.run([*CLI, "train", "refiner", "--segmenter", model, "--data", str(camvid),
                             "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.train
def test_segmenter_and_refiner_export_as_one_fused_graph(tiny_run: Path, tiny_refiner_run: Path, tmp_path: Path):
    pytest.importorskip("tensorflow")
    from segrefine_edge.contract import read_embedded_metadata
    from segrefine_edge.segmenter import Segmenter

    refiner_run = tiny_refiner_run
    fused = tmp_path / "fused.tflite"
    result = subprocess.run([*CLI, "convert", str(tiny_run), "--fuse-refiner", str(refiner_run), "--to", "float32",
                             "--out", str(fused), "--val-count", "2"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = read_embedded_metadata(fused)
    assert meta["role"] == "fused" and meta["info"]["validation"]["pixel_agreement_with_float"] > 0.99
    segmenter = Segmenter.open(fused)
    assert list(segmenter.output.shape[1:3]) == [32, 48]           # refined logits at the refiner's size


@pytest.mark.train
def test_temporal_generator_takes_the_previous_mask_and_starts_as_the_identity():
    pytest.importorskip("tensorflow")
    from segrefine_edge.training.refiner_net import RefinerConfig, build_generator

    generator = build_generator(RefinerConfig(input_hw=(32, 48), temporal=True, logits_stride=1))
    assert [t.name.split(":")[0] for t in generator.inputs] == ["image", "logits", "previous"]
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 32, 48, 3)).astype(np.float32)
    logits = rng.normal(0, 3, (1, 32, 48, 11)).astype(np.float32)
    previous = rng.dirichlet(np.ones(11), (1, 32, 48)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(generator([image, logits, previous])), logits, atol=1e-5)


@pytest.mark.train
def test_class_weights_scale_each_pixels_share_of_the_refiners_loss():
    """Weighting a class by 3 counts its pixels three times: the weighted loss is the
    pixel-count-weighted mean, and void stays out."""
    pytest.importorskip("tensorflow")
    from segrefine_edge.training.losses import boundary_weighted_loss

    rng = np.random.default_rng(2)
    refined = rng.normal(0, 2, (1, 8, 8, 3)).astype(np.float32)
    mask = np.zeros((1, 8, 8), np.int32)
    mask[0, :, 4:] = 1
    mask[0, 0, 0] = 255                                           # void
    plain = float(boundary_weighted_loss(mask, refined, 3, boundary_weight=0.0))
    weighted = float(boundary_weighted_loss(mask, refined, 3, boundary_weight=0.0,
                                            class_weights=np.array([1.0, 3.0, 1.0], np.float32)))
    z = refined[0] - refined[0].max(-1, keepdims=True)
    ce = -(z - np.log(np.exp(z).sum(-1, keepdims=True)))
    per_pixel = np.take_along_axis(ce, np.where(mask[0] == 255, 0, mask[0])[..., None], -1)[..., 0]
    w = np.where(mask[0] == 255, 0.0, np.where(mask[0] == 1, 3.0, 1.0))
    assert plain == pytest.approx(per_pixel[mask[0] != 255].mean(), rel=1e-5)
    assert weighted == pytest.approx((per_pixel * w).sum() / w.sum(), rel=1e-5)


@pytest.mark.train
def test_temporal_batches_hold_a_moved_previous_mask():
    pytest.importorskip("tensorflow")
    from segrefine_edge.training.refiner_data import RefinerSplit, batches

    rng = np.random.default_rng(1)
    masks = np.zeros((3, 40, 60), np.uint8)
    masks[:, :, 30:] = 2
    logits = np.log(np.eye(4, dtype=np.float32)[masks] * 0.9 + 0.025).astype(np.float16)
    data = RefinerSplit(rng.integers(0, 255, (3, 40, 60, 3), dtype=np.uint8), masks, logits)
    image, inputs, previous, mask = next(batches(data, 16, 4, real_share=0.5, seed=0, temporal=True))
    assert image.shape == (16, 40, 60, 3) and inputs.shape == previous.shape == (16, 40, 60, 4)
    assert mask.shape == (16, 40, 60)
    np.testing.assert_allclose(previous.sum(-1), 1.0, atol=1e-3)
    # moved copies: in some samples the previous mask's edge is no longer where the mask's is
    moved = [not np.array_equal(previous[i].argmax(-1), mask[i]) for i in range(16)]
    assert any(moved)


@pytest.mark.train
@pytest.mark.parametrize("heldout_share", [0.0, 0.5, 1.0])
def test_held_out_logits_make_their_share_of_the_real_inputs(heldout_share: float):
    pytest.importorskip("tensorflow")
    from segrefine_edge.training.refiner_data import RefinerSplit, batches

    rng = np.random.default_rng(6)
    data = RefinerSplit(rng.integers(0, 255, (3, 8, 12, 3), dtype=np.uint8), np.zeros((3, 8, 12), np.uint8),
                        np.zeros((3, 8, 12, 4), np.float16), heldout_logits=np.ones((3, 8, 12, 4), np.float16))
    _, inputs, _ = next(batches(data, 400, 4, real_share=1.0, seed=0, heldout_share=heldout_share))
    share = float((inputs[:, 0, 0, 0] == 1.0).mean())
    assert share == pytest.approx(heldout_share, abs=0.07)


@pytest.mark.train
def test_a_changed_image_reaches_the_refiner_and_the_mask_and_logits_do_not_change():
    pytest.importorskip("tensorflow")
    from segrefine_edge.training.refiner_data import RefinerSplit, batches

    rng = np.random.default_rng(7)
    data = RefinerSplit(np.full((2, 8, 12, 3), 100, np.uint8), rng.integers(0, 4, (2, 8, 12)).astype(np.uint8),
                        rng.normal(size=(2, 8, 12, 4)).astype(np.float16))
    plain = next(batches(data, 6, 4, real_share=1.0, seed=0))
    changed = next(batches(data, 6, 4, real_share=1.0, seed=0, change_image=lambda image: 255 - image))
    assert np.all(plain[0] == 100) and np.all(changed[0] == 155)
    np.testing.assert_array_equal(plain[1], changed[1])
    np.testing.assert_array_equal(plain[2], changed[2])


@pytest.mark.train
def test_temporal_refiner_trains_converts_and_carries_its_mask(tiny_run: Path, tiny_int8_segmenter: Path,
                                                               tmp_path: Path):
    pytest.importorskip("tensorflow")
    import cv2

    from segrefine_edge.pipeline import Pipeline
    from segrefine_edge.refiner import TFLiteRefiner
    from segrefine_edge.segmenter import Segmenter

    data = json.loads((tiny_run / "config.json").read_text())["data"]
    run = tmp_path / "temporal"
    trained = subprocess.run([*CLI, "train", "refiner", "--segmenter", str(tiny_run), "--data", data, "--out", str(run),
                              "--temporal", "--steps", "2", "--batch", "2", "--set", "eval_every=2",
                              "--set", "model.input_hw=[32,48]", "--set", "model.logits_stride=1"],
                             capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    refiner = TFLiteRefiner(_convert_int8(run, tmp_path / "refiner.tflite"))
    assert refiner.temporal and sorted(refiner.order) == ["image", "logits", "previous"]
    assert refiner._inputs["logits"].shape[1:3] == (32, 48)        # the runtime resizes the 16x24 logits
    pipeline = Pipeline.from_parts(Segmenter.open(tiny_int8_segmenter), refiner)
    frames = [cv2.imread(str(p)) for p in sorted(Path(data, "val").iterdir())[:2]]
    for frame in frames:
        labels = pipeline.segment(frame).labels
        assert labels.shape == frame.shape[:2]
    assert refiner._previous is not None and refiner._previous.shape == (32, 48, 11)
    pipeline.reset()
    assert refiner._previous is None

    fused = subprocess.run([*CLI, "convert", str(tiny_run), "--fuse-refiner", str(run), "--to", "float32",
                            "--out", str(tmp_path / "fused.tflite"), "--val-count", "0"],
                           capture_output=True, text=True, timeout=300)
    assert fused.returncode != 0 and "temporal refiner" in fused.stderr and "Traceback" not in fused.stderr


@pytest.mark.parametrize("quantised_scores", [False, True])
def test_scores_reach_the_refiner_within_one_step_of_resizing_before_quantising(quantised_scores: bool):
    """The refiner quantises the segmenter's scores at their own (quarter) size and resizes
    the integers: every value inside the input's calibrated range lands within one
    quantisation step of the slow reference (resize, then quantise)."""
    import cv2

    from segrefine_edge.models import default_refiner_path
    from segrefine_edge.refiner import TFLiteRefiner

    path = default_refiner_path()
    if path is None:
        pytest.skip("this build ships no refiner")
    refiner = TFLiteRefiner(path)
    info = refiner._inputs["logits"]
    rng = np.random.default_rng(3)
    low = max((0 - info.zero_point) * info.scale, -12.7)         # inside both this input's and an
    high = min((255 - info.zero_point) * info.scale, 12.7)       # int8 map's (scale 0.1) range
    logits = rng.uniform(low, high, (44, 60, 11)).astype(np.float32)
    scores = ScoreMap("logits", logits)
    if quantised_scores:
        scores = ScoreMap("logits", np.round(logits / 0.1).astype(np.int8), 0.1, 0)
    tensor, name = refiner._scores_tensor(scores)
    h, w = info.shape[1:3]
    reference = cv2.resize(scores.real(), (w, h), interpolation=cv2.INTER_LINEAR) / info.scale + info.zero_point
    reference = np.clip(np.round(reference), 0, 255)
    assert name == "logits" and tensor.shape == (h, w, 11) and tensor.dtype == info.dtype
    assert np.abs(tensor.astype(np.float32) - reference).max() <= 1.0


def test_temporal_blend_averages_the_output_with_the_previous_one_along_the_flow():
    import cv2

    from segrefine_edge.models import default_refiner_path
    from segrefine_edge.refiner import TFLiteRefiner

    path = default_refiner_path()
    if path is None:
        pytest.skip("this build ships no refiner")
    rng = np.random.default_rng(5)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8), (0, 0), 3)  # texture for the flow
    first_scores = ScoreMap("logits", rng.normal(0, 3, (44, 60, 11)).astype(np.float32))
    second_scores = ScoreMap("logits", rng.normal(0, 3, (44, 60, 11)).astype(np.float32))
    plain, blended = TFLiteRefiner(path, blend=0.0), TFLiteRefiner(path, blend=0.5)
    first = plain.refine(frame, first_scores).probabilities()
    # a first frame has nothing to blend with: only the 8-bit rounding of the blended output differs
    assert np.abs(blended.refine(frame, first_scores).probabilities() - first).max() <= 0.5 / 255 + 1e-6
    # the same frame again: the flow is zero, so the previous output comes back where it was
    second = plain.refine(frame, second_scores).probabilities()
    mixed = blended.refine(frame, second_scores).probabilities()
    assert np.abs(second - first).max() > 0.3
    assert np.abs(mixed - (0.5 * second + 0.5 * first)).max() < 0.02
    with pytest.raises(ModelError, match="outside"):
        TFLiteRefiner(path, blend=1.0)


def test_the_refiner_gets_the_segmenters_copy_of_the_frame_where_that_is_big_enough():
    from segrefine_edge.models import default_model_path
    from segrefine_edge.pipeline import Pipeline
    from segrefine_edge.segmenter import Segmenter

    class Recording:
        name = "recording"

        def __init__(self, frame_hw: tuple[int, int]) -> None:
            self.frame_hw, self.seen = frame_hw, []

        def refine(self, frame_bgr: np.ndarray, scores: ScoreMap) -> ScoreMap:
            self.seen.append(frame_bgr.shape[:2])
            return scores

        def reset(self) -> None:
            return None

    segmenter = Segmenter.open(default_model_path())
    frame = np.random.default_rng(0).integers(0, 255, (576, 768, 3), dtype=np.uint8)
    fits, too_small = Recording((176, 240)), Recording((400, 480))
    for refiner in (fits, too_small):
        Pipeline.from_parts(segmenter, refiner).segment(frame)
    assert fits.seen == [segmenter.contract.input_hw] and too_small.seen == [(576, 768)]


def test_after_a_cut_the_temporal_refiner_starts_afresh_and_blends_again_on_continuous_frames(camvid: Path,
                                                                                             vtest: Path):
    """The blend is gated by how well the flow explains the new frame: across a cut (a CamVid
    frame, then a frame of another video) nothing of the old mask may leak into the new one;
    on the next frame of the same video the blend carries the mask again."""
    import cv2

    from segrefine_edge.models import default_model_path, default_refiner_path
    from segrefine_edge.pipeline import Pipeline
    from segrefine_edge.refiner import TFLiteRefiner
    from segrefine_edge.segmenter import Segmenter

    street = cv2.imread(str(sorted((camvid / "val").iterdir())[0]))
    capture = cv2.VideoCapture(str(vtest))
    plaza = [cv2.resize(capture.read()[1], (480, 360)) for _ in range(2)]

    def run(frames):
        pipeline = Pipeline.from_parts(Segmenter.open(default_model_path()), TFLiteRefiner(default_refiner_path()))
        return [pipeline.segment(frame).scores.values for frame in frames]

    after_cut = run([street, plaza[0]])[1]
    fresh = run([plaza[0]])[0]
    assert np.array_equal(after_cut, fresh)
    continued, alone = run(plaza)[1], run([plaza[1]])[0]
    assert not np.array_equal(continued, alone)              # the blend still works where the flow holds
