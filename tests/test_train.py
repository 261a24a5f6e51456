"""`segrefine-edge train segmenter` on a tiny CamVid subset: a run completes and resumes;
bad input fails with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.train

CLI = [sys.executable, "-m", "segrefine_edge"]
TINY = ["--set", "model.alpha=0.35", "--set", "augment.crop_hw=[64,96]", "--set", "eval_hw=[64,96]",
        "--set", "steps_per_epoch=2", "--batch", "2", "--set", "backbone_weights=null"]


def _train(data: Path, out: Path, *extra: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run([*CLI, "train", "segmenter", "--data", str(data), "--out", str(out), *TINY, *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def test_a_run_completes_skips_an_unreadable_image_and_resumes(tiny_camvid: Path, tmp_path: Path):
    broken = sorted((tiny_camvid / "train").iterdir())[1]
    broken.write_bytes(b"not a png")
    out = tmp_path / "run"
    result = _train(tiny_camvid, out, "--epochs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped 1 unreadable image" in result.stderr
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1] and 0 <= history[0]["val_miou"] <= 1
    assert (out / "best.weights.h5").is_file() and json.loads((out / "config.json").read_text())["epochs"] == 1
    again = _train(tiny_camvid, out, "--epochs", "1")
    assert "already holds a run" in _error_line(again)
    different = _train(tiny_camvid, out, "--epochs", "2", "--resume", "--set", "learning_rate=0.1")
    assert "different config" in _error_line(different)


def test_a_second_schedule_starts_from_a_finished_runs_weights(tiny_camvid: Path, tmp_path: Path):
    from segrefine_edge.training.config import load_config
    from segrefine_edge.training.deeplab import build_segmenter

    first, second = tmp_path / "first", tmp_path / "second"
    assert _train(tiny_camvid, first, "--epochs", "1").returncode == 0
    init = ["--set", f"init_weights={first / 'best.weights.h5'}"]
    result = _train(tiny_camvid, second, "--epochs", "1", "--set", "learning_rate=0", *init)
    assert result.returncode == 0, result.stderr[-3000:]
    # with a learning rate of 0 only BatchNorm statistics move: every trained weight is the first run's
    model = build_segmenter(load_config(first / "config.json").model, (64, 96))
    model.load_weights(first / "best.weights.h5")
    trained = [w.numpy() for w in model.trainable_weights]
    model.load_weights(second / "best.weights.h5")
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(trained, model.trainable_weights, strict=True))
    other_model = _train(tiny_camvid, tmp_path / "wider", "--set", "model.alpha=0.5", *init)
    assert "do not fit this model" in _error_line(other_model)
    assert not (tmp_path / "wider").exists()
    missing = _train(tiny_camvid, tmp_path / "m", "--set", "init_weights=nowhere.weights.h5")
    assert "init_weights nowhere.weights.h5 not found" in _error_line(missing)


def test_a_stride2_stage_starts_from_a_stride4_run_and_exports_at_half_the_input(tiny_camvid: Path, tmp_path: Path):
    from click.testing import CliRunner

    from segrefine_edge.cli import main
    from segrefine_edge.edgetpu import check_edgetpu
    from segrefine_edge.segmenter import Segmenter
    from segrefine_edge.training.config import load_config
    from segrefine_edge.training.deeplab import build_segmenter

    first, fine = tmp_path / "first", tmp_path / "fine"
    assert _train(tiny_camvid, first, "--epochs", "1").returncode == 0
    result = _train(tiny_camvid, fine, "--epochs", "1", "--set", "learning_rate=0", "--set", "model.fine_filters=8",
                    "--set", f"init_weights={first / 'best.weights.h5'}")
    assert result.returncode == 0, result.stderr[-3000:]
    coarse = build_segmenter(load_config(first / "config.json").model, (64, 96))
    coarse.load_weights(first / "best.weights.h5")
    model = build_segmenter(load_config(fine / "config.json").model, (64, 96))
    model.load_weights(fine / "best.weights.h5")
    assert model.get_layer("fine_correction").trainable_weights           # the stage is there
    for layer in coarse.layers:                                             # every other layer came over by name
        ours = model.get_layer(layer.name).trainable_weights
        assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(layer.trainable_weights, ours, strict=True))
    out = tmp_path / "fine.tflite"
    converted = CliRunner().invoke(main, ["convert", str(fine), "--to", "edgetpu", "--out", str(out),
                                          "--calib-count", "2", "--val-count", "0"])
    assert converted.exit_code == 0, converted.output
    assert list(Segmenter.open(out).output.shape[1:3]) == [32, 48]         # logits at half the input
    assert check_edgetpu(out).findings == []


def test_bad_inputs(tiny_camvid: Path, tmp_path: Path):
    missing = _train(tiny_camvid, tmp_path / "a", "--set", "backbone_weights=\"nowhere.weights.h5\"")
    assert "nowhere.weights.h5 not found" in _error_line(missing)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    assert "no image/mask pairs" in _error_line(_train(empty, tmp_path / "b"))
    weighting = _train(tiny_camvid, tmp_path / "w", "--set", "class_weighting=inverse")
    assert "class weighting 'inverse' is not one of" in _error_line(weighting)
    assert not (tmp_path / "w").exists()
    ema = _train(tiny_camvid, tmp_path / "e", "--set", "ema_momentum=1")
    assert "ema_momentum 1 must be in [0, 1)" in _error_line(ema)
    fold = _train(tiny_camvid, tmp_path / "f", "--set", "folds=2", "--set", "held_out=2")
    assert "fold 2 of 2 does not exist" in _error_line(fold)
    assert not (tmp_path / "f").exists()
    mask = sorted((tiny_camvid / "trainannot").iterdir())[0]
    import cv2

    values = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    values[0, 0] = 40
    cv2.imwrite(str(mask), values)
    assert "holds value 40" in _error_line(_train(tiny_camvid, tmp_path / "c"))
    assert not (tmp_path / "c" / "config.json").exists()          # a failed start leaves no run behind


def test_the_held_out_sequence_protocol_scores_that_drive_and_keeps_the_last_epoch(tiny_camvid: Path,
                                                                                  tmp_path: Path):
    """Under the protocol nothing is chosen on the held-out drive: the kept record is the last epoch's,
    whatever it scored; the drive comes out of val as well as train."""
    out = tmp_path / "run"
    result = _train(tiny_camvid, out, "--epochs", "2", "--set", "held_out_sequence=0016E5",
                    "--set", "augment.capture=0.5", "--set", "augment.balanced_crops=0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all("val_miou" not in h for h in history)
    assert json.loads((out / "best.json").read_text()) == history[-1]
    assert "held-out 0016E5 mIoU" in result.stdout
    unknown = _train(tiny_camvid, tmp_path / "u", "--set", "held_out_sequence=Seq05VD")
    assert "'Seq05VD' names no image; the sequences here are 0001TP, 0016E5" in _error_line(unknown)
    both = _train(tiny_camvid, tmp_path / "b", "--set", "held_out_sequence=0016E5", "--set", "folds=2")
    assert "set one of them" in _error_line(both)


def test_a_final_fit_trains_on_train_and_val_and_keeps_the_last_epoch(tiny_camvid: Path, tmp_path: Path):
    """The shipped model's final fit: every labelled image trained on (4 train + 4 val here), val scored
    under a name that says it was seen, and no epoch chosen by it."""
    out = tmp_path / "run"
    result = _train(tiny_camvid, out, "--epochs", "2", "--set", "final_fit=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training on 8 images, scoring 4 each epoch as seen_val_miou" in result.stderr
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all("val_miou" not in h for h in history)
    assert json.loads((out / "best.json").read_text()) == history[-1]
    assert "final fit: the last epoch (2) kept" in result.stdout
    both = _train(tiny_camvid, tmp_path / "b", "--set", "final_fit=true", "--set", "held_out_sequence=0016E5")
    assert "cannot also leave a sequence or a fold out" in _error_line(both)


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_multi_worker_mirrored_workers_train_in_step_on_loopback(tiny_camvid: Path, tmp_path: Path):
    import os

    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        command = [*CLI, "train", "segmenter", "--data", str(tiny_camvid), "--out", str(tmp_path / f"run{index}"),
                   *TINY, "--epochs", "2", "--strategy", "multi-worker", "--set", "ema_momentum=0.9"]
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [w.communicate(timeout=400) for w in workers]
    finally:
        for w in workers:
            w.kill()
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-3000:]
    history = [json.loads(line) for line in (tmp_path / "run0" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["loss"]) for h in history)
    assert all(0 <= h["val_miou_raw"] <= 1 for h in history)      # averaged weights scored beside the raw
    assert not (tmp_path / "run1").exists()                  # only the chief writes the run


def test_multi_worker_without_a_cluster_says_what_is_missing(tiny_camvid: Path, tmp_path: Path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = _train(tiny_camvid, tmp_path / "run", "--strategy", "multi-worker", env=env)
    assert "needs TF_CONFIG" in _error_line(result)


def test_averaged_weights_are_the_ones_keras_would_write_back():
    """The weights each epoch is scored with are the optimizer's moving averages, in the model's
    weight order, with non-trainable weights (frozen BatchNorm statistics) as they are."""
    import keras

    from segrefine_edge.training.averaging import averaged_weights

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2)])
    optimizer = keras.optimizers.AdamW(0.1, use_ema=True, ema_momentum=0.5)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    for _ in range(3):
        grads = [rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    raw, averaged = model.get_weights(), averaged_weights(model, optimizer)
    optimizer.finalize_variable_values(model.trainable_variables)
    written = model.get_weights()
    assert len(averaged) == len(written) == len(raw)
    for a, w in zip(averaged, written, strict=True):
        np.testing.assert_array_equal(a, w)
    assert not np.allclose(raw[0], averaged[0])
    np.testing.assert_array_equal(averaged_weights(model, keras.optimizers.AdamW(0.1))[0], written[0])


def test_training_reads_palette_png_masks_as_class_indices(tmp_path: Path):
    """VOC masks and the project's own --masks output are palette PNGs: their pixel values are
    indices into the palette, which cv2.imread would turn into colours."""
    import cv2

    from segrefine_edge.datasets import Pair
    from segrefine_edge.pngio import write_labels_png
    from segrefine_edge.training.data import decode_split

    labels = np.zeros((8, 10), np.uint8)
    labels[:, 5:] = 2
    palette = np.array([[0, 0, 0], [200, 10, 10], [128, 64, 128]], np.uint8)
    write_labels_png(tmp_path / "m.png", labels, palette)
    cv2.imwrite(str(tmp_path / "i.png"), np.zeros((8, 10, 3), np.uint8))
    split = decode_split([Pair(tmp_path / "i.png", tmp_path / "m.png")], num_classes=3, void=255)
    np.testing.assert_array_equal(split.masks[0], labels)


def test_a_keras_without_the_private_averages_fails_in_one_clear_line():
    """Keras keeps weight averages in a private attribute: an upgrade that drops it must say so."""
    import keras

    from segrefine_edge.errors import SegrefineError
    from segrefine_edge.training.averaging import moving_averages

    optimizer = keras.optimizers.AdamW(0.1, use_ema=True)
    variable = keras.Variable(np.zeros(3, "float32"))
    optimizer.build([variable])
    assert len(moving_averages(optimizer)) == 1
    with pytest.raises(SegrefineError, match="_model_variables_moving_average"):
        moving_averages(object())


def test_lovasz_softmax_is_the_mean_jaccard_loss_on_hard_predictions():
    """On one-hot probabilities the Lovasz extension is exact: the mean of 1 - IoU over the
    classes present in the truth; void pixels count nowhere."""
    import tensorflow as tf

    from segrefine_edge.training.losses import lovasz_softmax

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (2, 6, 7))
    labels[0, 0, :3] = 255
    pred = rng.integers(0, 4, (2, 6, 7))
    valid = labels < 4
    ious = [((labels == c) & (pred == c) & valid).sum() / (((labels == c) | (pred == c)) & valid).sum()
            for c in range(4) if ((labels == c) & valid).any()]
    loss = float(lovasz_softmax(tf.constant(np.eye(4)[pred] * 100.0, tf.float32), tf.constant(labels), 4))
    assert loss == pytest.approx(1 - np.mean(ious), abs=1e-5)
    perfect = tf.constant(np.eye(4)[np.where(valid, labels, 0)] * 100.0, tf.float32)
    assert float(lovasz_softmax(perfect, tf.constant(labels), 4)) == pytest.approx(0.0, abs=1e-6)
