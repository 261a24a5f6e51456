"""Shared fixtures: paths into ../shared (fail clearly when it is missing) and tiny synthetic inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def shared_path(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.fail(f"{path} is missing: these tests need ../shared beside the repository (see README)")
    return path


@pytest.fixture(scope="session")
def peers() -> Path:
    return shared_path("peers")


@pytest.fixture(scope="session")
def cityscapes_model(peers: Path) -> Path:
    return peers / "coral" / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite"


@pytest.fixture(scope="session")
def vtest() -> Path:
    return shared_path("videos/vtest.avi")


@pytest.fixture(scope="session")
def tree_video() -> Path:
    return shared_path("videos/tree.avi")


@pytest.fixture(scope="session")
def camvid() -> Path:
    return shared_path("data/camvid")


@pytest.fixture()
def tiny_camvid(tmp_path: Path, camvid: Path) -> Path:
    """A CamVid copy with the first four frames of train and of val (train's first frames are the dusk
    drive 0001TP, val's are 0016E5: two drives) and the class file."""
    root = tmp_path / "camvid"
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for image in sorted((camvid / split).iterdir())[:4]:
            shutil.copy(image, root / split / image.name)
            shutil.copy(camvid / f"{split}annot" / image.name, root / f"{split}annot" / image.name)
    shutil.copy(camvid / "classes.json", root / "classes.json")
    return root


@pytest.fixture()
def small_video(tmp_path: Path) -> Path:
    """A 12-frame synthetic MJPG video (unit tests only)."""
    path = tmp_path / "small.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(12):
        frame = np.full((48, 64, 3), 20 * i, np.uint8)
        cv2.rectangle(frame, (i * 4, 10), (i * 4 + 12, 30), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, camvid: Path) -> Path:
    """A run folder as `train segmenter` writes it: MobileNetV2 0.35 at 64x96, untrained head.

    Its weights are drawn from a fixed seed: an untrained model's labels are close calls
    everywhere, so how many of them a conversion keeps depends on the draw (0.94-0.998 of
    pixels for dynamic range over the draws measured), and a test of a conversion must not."""
    pytest.importorskip("tensorflow")
    import keras

    from segrefine_edge.training.config import TrainConfig, config_to_dict
    from segrefine_edge.training.deeplab import SegmenterConfig, build_segmenter

    root = tmp_path_factory.mktemp("convert")
    data = root / "data"
    for split in ("train", "val"):
        (data / split).mkdir(parents=True)
        (data / f"{split}annot").mkdir()
        for image in sorted((camvid / "val").iterdir())[:4]:
            shutil.copy(image, data / split / image.name)
            shutil.copy(camvid / "valannot" / image.name, data / f"{split}annot" / image.name)
    shutil.copy(camvid / "classes.json", data / "classes.json")
    config = TrainConfig(data=str(data), model=SegmenterConfig(alpha=0.35), eval_hw=(64, 96), backbone_weights=None)
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config_to_dict(config)))
    keras.utils.set_random_seed(0)
    build_segmenter(config.model, (64, 96)).save_weights(run / "best.weights.h5")
    return run
