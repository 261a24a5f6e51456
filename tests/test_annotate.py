"""`segrefine-edge annotate` on real video: every format read back to the masks, pixel for pixel,
with the readers the tools use where they install (pycocotools) and our own elsewhere; the review
ranking; a job killed at random points resumes to byte-identical outputs; bad input, one line."""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from segrefine_edge.annotate import brush_rle
from segrefine_edge.pngio import read_labels

CLI = [sys.executable, "-m", "segrefine_edge"]
FORMATS = ["--format", "png", "--format", "cvat", "--format", "coco", "--format", "labelstudio"]
# The shipped model without its refiner: quick, and its CamVid palette has a distinct colour per class
JOB = ["--every", "20", "--chunk", "8", "--no-refiner", "--quiet", *FORMATS]


def _annotate(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "annotate", *args], capture_output=True, text=True, timeout=timeout)


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every file a job leaves, but its progress log (whose lines a resumed job writes in another order)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "progress.jsonl"}


@pytest.fixture(scope="module")
def job(vtest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("annotate") / "job"
    result = _annotate(str(vtest), "--out", str(out), *JOB)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def masks(job: Path) -> dict[int, np.ndarray]:
    manifest = json.loads((job / "manifest.json").read_text())
    return {record["frame"]: read_labels(job / record["mask"]) for record in manifest["frames"]}


def test_the_sampled_frames_are_annotated_and_ranked(job: Path, masks: dict[int, np.ndarray]):
    assert sorted(masks) == list(range(0, 795, 20))
    rows = list(csv.DictReader(io.StringIO((job / "review.csv").read_text())))
    shares = [float(r["uncertain_share"]) for r in rows]
    assert len(rows) == 40 and shares == sorted(shares, reverse=True) and shares[0] > shares[-1]
    assert all(r["classes"] for r in rows)


def test_png_export_is_the_masks_with_their_classes(job: Path, masks: dict[int, np.ndarray]):
    classes = json.loads((job / "png" / "classes.json").read_text())
    assert classes["classes"][0] == "Sky" and len(classes["palette"]) == len(classes["classes"])
    for frame, mask in masks.items():
        assert np.array_equal(read_labels(job / "png" / "vtest" / f"frame_{frame:06d}.png"), mask)


def test_cvat_zip_reads_back_through_its_labelmap_and_declares_every_colour(job: Path, masks: dict[int, np.ndarray]):
    with zipfile.ZipFile(job / "cvat" / "vtest.zip") as archive:
        names = archive.namelist()
        lines = [line for line in archive.read("labelmap.txt").decode().splitlines() if not line.startswith("#")]
        listed = archive.read("ImageSets/Segmentation/default.txt").decode().split()
        colours = {tuple(int(c) for c in line.split(":")[1].split(",")): i - 1 for i, line in enumerate(lines)}
        assert lines[0] == "background:0,0,0::" and len(colours) == len(lines)
        assert listed == [f"frame_{f:06d}" for f in sorted(masks)]
        for frame, mask in masks.items():
            data = np.frombuffer(archive.read(f"SegmentationClass/frame_{frame:06d}.png"), np.uint8)
            rgb = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            seen = {tuple(c) for c in np.unique(rgb.reshape(-1, 3), axis=0).tolist()}
            assert seen <= set(colours), "a colour CVAT would refuse as an undeclared label"
            back = np.vectorize(lambda r, g, b: colours[(r, g, b)])(rgb[..., 0], rgb[..., 1], rgb[..., 2])
            assert np.array_equal(back, mask)
    assert len(names) == 2 + len(masks)


def test_coco_masks_decode_with_pycocotools(job: Path, masks: dict[int, np.ndarray]):
    from pycocotools import mask as mask_api
    from pycocotools.coco import COCO

    coco = COCO(str(job / "coco" / "annotations.json"))
    for image in coco.dataset["images"]:
        assert image["video"] == "vtest" and (job / image["file_name"]).is_file()
        rebuilt = np.full((image["height"], image["width"]), -1)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])):
            region = coco.annToMask(annotation).astype(bool)
            assert not (rebuilt[region] >= 0).any()                     # one annotation per class, disjoint
            rebuilt[region] = annotation["category_id"] - 1
            assert annotation["area"] == int(mask_api.area(annotation["segmentation"]))
        assert np.array_equal(rebuilt, masks[image["frame_index"]])


def test_label_studio_tasks_hold_brush_rle_that_decodes_to_the_masks(job: Path, masks: dict[int, np.ndarray]):
    tasks = json.loads((job / "labelstudio" / "tasks.json").read_text())
    labels = json.loads((job / "png" / "classes.json").read_text())["classes"]
    config = (job / "labelstudio" / "config.xml").read_text()
    assert all(f'value="{name}"' in config for name in labels)
    for task in tasks:
        prediction = task["predictions"][0]
        assert prediction["model_version"] == "camvid_deeplabv3plus_mnv2_int8.tflite" and 0 <= prediction["score"] <= 1
        assert task["data"]["image"].startswith("/data/local-files/?d=chunks/vtest/")
        mask = masks[task["data"]["frame"]]
        rebuilt = np.full(mask.shape, -1)
        for region in prediction["result"]:
            assert region["original_width"] == mask.shape[1] and region["type"] == "brushlabels"
            rebuilt[brush_rle.decode(region["value"]["rle"], mask.shape)] = labels.index(region["value"]["brushlabels"][0])
        assert np.array_equal(rebuilt, mask)


def test_brush_rle_round_trips_edge_cases():
    rng = np.random.default_rng(3)
    for mask in (np.zeros((5, 7), bool), np.ones((300, 300), bool), rng.random((40, 60)) > 0.5):
        assert np.array_equal(brush_rle.decode(brush_rle.encode(mask), mask.shape), mask)


def test_a_job_killed_at_random_points_resumes_to_the_same_bytes(vtest: Path, job: Path, tmp_path: Path):
    out = tmp_path / "killed"
    rng = np.random.default_rng(7)
    for _ in range(3):
        process = subprocess.Popen([*CLI, "annotate", str(vtest), "--out", str(out), *JOB],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(2.0, 6.0)))
        process.send_signal(signal.SIGKILL)
        process.wait()
    resumed = _annotate(str(vtest), "--out", str(out), *JOB)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _outputs(out) == _outputs(job)


def test_another_job_in_the_same_folder_is_refused_in_one_line(vtest: Path, job: Path):
    result = _annotate(str(vtest), "--out", str(job), *[a if a != "20" else "25" for a in JOB])
    assert result.returncode == 2 and "holds another annotation job (it differs in sampling)" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_input_among_others_is_listed_and_the_others_complete(tmp_path: Path, small_video: Path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    out = tmp_path / "job"
    result = _annotate(str(broken), str(small_video), "--out", str(out), "--no-refiner", "--quiet")
    assert result.returncode == 2 and "broken.mp4" in result.stderr and "Traceback" not in result.stderr
    assert len(json.loads((out / "manifest.json").read_text())["frames"]) == 12


@pytest.mark.parametrize(("args", "message"), [
    (["--every", "2", "--fps", "1"], "choose one of --every, --fps and --scenes"),
    (["--format", "gif"], "Invalid value for '--format'"),
])
def test_bad_options_get_one_line(small_video: Path, tmp_path: Path, args: list[str], message: str):
    result = _annotate(str(small_video), "--out", str(tmp_path / "job"), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_sparse_samples_run_as_stills_without_the_default_refiner_and_the_job_says_so(tmp_path: Path,
                                                                                     small_video: Path):
    """Frames 0.3 s apart run in image mode, where the default is no refiner (their masks are the
    segmenter's alone); frames 0.1 s apart keep the temporal refiner."""
    runs = {"sparse": ["--every", "3"], "alone": ["--every", "3", "--no-refiner"], "dense": ["--every", "1"]}
    jobs = {}
    for name, args in runs.items():
        result = _annotate(str(small_video), "--out", str(tmp_path / name), "--quiet", *args)
        assert result.returncode == 0, result.stderr[-2000:]
        jobs[name] = json.loads((tmp_path / name / "job.json").read_text())
    assert jobs["sparse"]["refiner"] == "camvid_refiner_temporal_int8"
    assert jobs["sparse"]["image_mode_refiner"] == jobs["alone"]["image_mode_refiner"] == "none"
    assert jobs["dense"]["refiner"] == "camvid_refiner_temporal_int8" and "image_mode_refiner" not in jobs["dense"]

    def masks(name: str) -> list[bytes]:
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        return [(tmp_path / name / record["mask"]).read_bytes() for record in manifest["frames"]]

    assert len(masks("sparse")) == 4 and masks("sparse") == masks("alone")


def test_scenes_take_a_frame_at_each_cut(tmp_path: Path, small_video: Path):
    """Two clips joined at a cut: --scenes picks the first frame, the cut, and one per --max-gap."""
    from segrefine_edge.annotate.sampling import histogram, scene_frames

    frames = [np.full((48, 64, 3), (200, 30, 30), np.uint8)] * 20 + [np.full((48, 64, 3), (30, 200, 30), np.uint8)] * 20
    assert scene_frames([histogram(f) for f in frames], video_fps=10.0, max_gap=1.5) == [0, 15, 20, 35]


def test_the_ray_engine_on_two_actors_writes_the_same_bytes_as_the_local_one(vtest: Path, job: Path, tmp_path: Path):
    pytest.importorskip("ray.data")
    out = tmp_path / "ray"
    result = _annotate(str(vtest), "--out", str(out), *JOB, "--engine", "ray", "--actors", "2", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _outputs(out) == _outputs(job)


def test_the_ray_engine_without_the_extra_says_what_to_install(small_video: Path, tmp_path: Path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from segrefine_edge.cli import run\n"
            f"sys.argv = ['segrefine-edge', 'annotate', {str(small_video)!r}, '--out', {str(tmp_path / 'j')!r}, "
            "'--engine', 'ray']\n"
            "run()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install 'segrefine-edge[ray]'" in result.stderr
    assert not (tmp_path / "j").exists()


def test_uncertain_share_counts_low_confidence_and_close_calls():
    from segrefine_edge.annotate.review import uncertain_share
    from segrefine_edge.pipeline import SegmentationResult
    from segrefine_edge.scores import ScoreMap

    logits = np.zeros((2, 2, 3), np.float32)
    logits[0, 0] = [9, 0, 0]          # sure
    logits[0, 1] = [2, 1.9, -5]       # a close call between two classes
    logits[1, 0] = [0.1, 0, 0]        # low confidence
    logits[1, 1] = [0, 0, 8]          # sure
    labels = np.zeros((2, 2), np.uint8)
    assert uncertain_share(SegmentationResult(labels, ScoreMap("logits", logits), {})) == 0.5
    assert uncertain_share(SegmentationResult(labels, ScoreMap("labels", labels), {})) == 0.0
