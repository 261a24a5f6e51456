"""The public pipeline: options, results, modes, the fit checks at creation and misuse."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import segrefine_edge
from segrefine_edge.errors import ModelError, PipelineError
from segrefine_edge.models import default_model_path, default_refiner_path
from segrefine_edge.pipeline import STAGES, Pipeline, PipelineOptions, SegmentationResult, check_segmenter

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def frames(camvid: Path) -> list[np.ndarray]:
    return [cv2.imread(str(path)) for path in sorted((camvid / "val").iterdir())[:3]]


def test_default_pipeline_segments_a_frame(frames):
    with Pipeline() as pipeline:
        result = pipeline.segment(frames[0])
        assert pipeline.refiner.name == default_refiner_path().stem
        assert "mode: video" in pipeline.describe()
    assert isinstance(result, SegmentationResult)
    assert result.labels.shape == frames[0].shape[:2] and result.labels.dtype == np.uint8
    assert result.labels.max() < pipeline.contract.num_classes
    assert set(result.timings_ms) == set(STAGES) and all(ms >= 0 for ms in result.timings_ms.values())
    confidence = result.confidence()
    assert confidence.ndim == 2
    assert confidence.min() > 0.0 and confidence.max() <= 1.0


def test_the_public_names_are_exported():
    assert segrefine_edge.Pipeline is Pipeline and segrefine_edge.PipelineOptions is PipelineOptions
    assert "SegmentationResult" in segrefine_edge.__all__


def test_image_mode_carries_nothing_from_one_still_to_the_next(frames):
    """A temporal refiner in image mode must give each still the labels it gives it alone."""
    options = PipelineOptions(mode="image", refiner=default_refiner_path())
    with Pipeline(options) as carried, Pipeline(options) as fresh:
        assert carried.refiner.temporal
        carried.segment(frames[0])
        after_another = carried.segment(frames[2]).labels
        alone = fresh.segment(frames[2]).labels
    assert np.array_equal(after_another, alone)


def test_image_mode_runs_no_refiner_by_default_and_the_one_it_is_given(frames):
    """On a still the default is the segmenter alone (no refiner recipe raised accuracy on drives it
    never saw); a refiner named explicitly still runs."""
    with Pipeline(PipelineOptions(mode="image")) as default, \
            Pipeline(PipelineOptions(mode="image", refiner=None)) as alone, \
            Pipeline(PipelineOptions(mode="image", refiner=default_refiner_path())) as refined:
        assert default.refiner.name == "none" and refined.refiner.name == default_refiner_path().stem
        labels = default.segment(frames[0]).labels
        assert np.array_equal(labels, alone.segment(frames[0]).labels)
        assert not np.array_equal(labels, refined.segment(frames[0]).labels)


def test_video_mode_carries_the_mask_and_reset_forgets_it(frames):
    with Pipeline(PipelineOptions(mode="video")) as pipeline:
        assert pipeline.refiner.temporal
        pipeline.segment(frames[0], timestamp=0.0)
        assert pipeline.refiner._previous is not None
        pipeline.reset()
        assert pipeline.refiner._previous is None
        pipeline.segment(frames[1], timestamp=0.0)   # a new clip may start its clock again


def test_the_default_refiner_only_goes_behind_the_shipped_segmenter(cityscapes_model):
    assert Pipeline(PipelineOptions(model=default_model_path())).refiner.name == default_refiner_path().stem
    assert Pipeline(PipelineOptions(mode="live")).refiner.name == default_refiner_path().stem
    other = Pipeline(PipelineOptions(model=cityscapes_model))
    assert other.refiner.name == "none"
    assert Pipeline(PipelineOptions(refiner=None)).refiner.name == "none"


def test_every_shipped_refiner_card_names_the_shipped_segmenter_it_was_trained_behind():
    """A refiner fits the segmenter whose outputs it learned from and was calibrated on. Each card
    records that file's SHA-256, so a segmenter replaced without retraining its refiners fails here."""
    import hashlib

    from segrefine_edge.models import MODELS_DIR

    segmenter = default_model_path()
    digest = hashlib.sha256(segmenter.read_bytes()).hexdigest()
    refiners = sorted(p for p in MODELS_DIR.glob("*.tflite") if p != segmenter)
    assert default_refiner_path() in refiners
    for refiner in refiners:
        card = refiner.with_suffix(".md").read_text()
        assert f"sha256 {digest}" in card, f"{refiner.name} was not trained behind {segmenter.name} ({digest})"


@pytest.mark.parametrize(("call", "message"), [
    (lambda p: p.segment(np.zeros((8, 8), np.uint8)), "BGR uint8 array"),
    (lambda p: p.segment(np.zeros((8, 8, 3), np.float32)), "BGR uint8 array"),
    (lambda p: p.segment(np.zeros((8, 8, 4), np.uint8)), "BGR uint8 array"),
    (lambda p: p.segment([[0, 0, 0]]), "got list"),
])
def test_frames_that_are_not_bgr_images_are_refused(call, message):
    with Pipeline(PipelineOptions(refiner=None)) as pipeline, pytest.raises(PipelineError, match=message):
        call(pipeline)


def test_timestamps_must_grow_in_video_and_are_refused_in_image_mode(frames):
    with Pipeline(PipelineOptions(refiner=None, mode="video")) as video:
        video.segment(frames[0], timestamp=1.0)
        with pytest.raises(PipelineError, match=r"does not follow 1\.0"):
            video.segment(frames[1], timestamp=1.0)
    with Pipeline(PipelineOptions(refiner=None, mode="image")) as image, \
            pytest.raises(PipelineError, match="image mode takes no timestamps"):
        image.segment(frames[0], timestamp=0.5)


def test_unknown_mode_and_a_closed_pipeline_are_refused(frames):
    with pytest.raises(PipelineError, match="mode 'stills' is not one of image, video, live"):
        Pipeline(PipelineOptions(mode="stills"))
    pipeline = Pipeline(PipelineOptions(refiner=None))
    with pipeline:
        pass
    with pytest.raises(PipelineError, match="closed"):
        pipeline.segment(frames[0])


def test_a_refiner_is_refused_as_the_segmenter():
    with pytest.raises(ModelError, match=r"is a refiner.*--refiner"):
        Pipeline(PipelineOptions(model=default_refiner_path(), refiner=None))


def test_a_refiner_is_refused_behind_a_segmenter_it_cannot_read(cityscapes_model):
    """The CamVid refiner reads 11 classes of logits; the Coral model gives 19 classes of labels."""
    with pytest.raises(ModelError, match="refiner"):
        Pipeline(PipelineOptions(model=cityscapes_model, refiner=default_refiner_path()))


@pytest.mark.parametrize(("shape", "kind"), [((1, 1000), "a classifier"), ((1, 10, 4), "a detector")])
def test_models_without_a_per_pixel_output_are_refused(shape, kind):
    fake = SimpleNamespace(backend=SimpleNamespace(path=Path("net.tflite")), output=SimpleNamespace(shape=shape),
                           contract=SimpleNamespace(role="segmenter", input_hw=(224, 224)))
    with pytest.raises(ModelError, match=f"no per-pixel map.*{kind}"):
        check_segmenter(fake)


def test_the_readme_python_example_runs(monkeypatch, tmp_path, vtest):
    """The README's example is what a new user copies first: it must run as printed."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    (tmp_path / "street.avi").symlink_to(vtest)
    exec(compile(example, "README.md", "exec"), {"__name__": "__readme__"})
    assert list(tmp_path.glob("*.png")), "the example writes a mask"


def test_keyframes_run_the_segmenter_every_nth_frame_and_carry_scores_between(camvid: Path):
    frames = [cv2.imread(str(path)) for path in sorted((camvid / "val").iterdir())[:7]]
    with Pipeline(PipelineOptions(keyframes=3)) as pipeline:
        results = [pipeline.segment(frame) for frame in frames]
    assert [r.keyframe for r in results] == [True, False, False, True, False, False, True]
    assert pipeline.keyframe_share() == pytest.approx(3 / 7)
    assert all(r.labels.shape == frames[0].shape[:2] for r in results)
    carried = [r for r in results if not r.keyframe]
    assert max(r.timings_ms["segment"] for r in carried) < min(r.timings_ms["segment"] for r in results if r.keyframe)


def test_a_cut_forces_a_keyframe(camvid: Path, vtest: Path):
    street = cv2.imread(str(sorted((camvid / "val").iterdir())[0]))
    plaza = cv2.resize(cv2.VideoCapture(str(vtest)).read()[1], (480, 360))
    with Pipeline(PipelineOptions(keyframes=10)) as pipeline:
        flags = [pipeline.segment(frame).keyframe for frame in (street, street, plaza)]
    assert flags == [True, False, True]


@pytest.mark.parametrize(("options", "message"), [
    (PipelineOptions(keyframes=0), "whole number 1 or more"),
    (PipelineOptions(keyframes="often"), "whole number 1 or more"),
    (PipelineOptions(keyframes="auto", refiner=None), "need ordered frames .* and a temporal refiner"),
    (PipelineOptions(keyframes=2, mode="image"), "need ordered frames"),
])
def test_keyframes_that_cannot_work_are_refused(options, message):
    with pytest.raises(PipelineError, match=message):
        Pipeline(options)


def test_a_wide_frame_is_padded_not_squashed_and_its_labels_cover_only_the_frame(frames):
    """--fit auto pads 16:9 and wider frames (CamVid's 2.35:1 crops: +9 mIoU against stretching),
    keeps 4:3 ones as they were; either way the labels are the frame's size."""
    frame = frames[0]
    wide = frame[78:282]                                          # a 2.35:1 crop of a real 4:3 frame
    with Pipeline(PipelineOptions(mode="image")) as auto, \
            Pipeline(PipelineOptions(mode="image", fit="stretch")) as stretch, \
            Pipeline(PipelineOptions(mode="image", fit="pad")) as pad:
        assert np.array_equal(auto.segment(frame).labels, stretch.segment(frame).labels)
        padded = auto.segment(wide)
        assert np.array_equal(padded.labels, pad.segment(wide).labels)
        assert padded.labels.shape == wide.shape[:2]
        assert not np.array_equal(padded.labels, stretch.segment(wide).labels)
        # the scores are cropped to the frame: 204 of 352 input rows, at the scores' resolution
        rows, cols = padded.scores.values.shape[:2]
        assert cols == stretch.segment(wide).scores.values.shape[1] and rows < cols * 204 / 480 + 2
    with pytest.raises(PipelineError, match="fit 'squash' is not one of auto, stretch, pad"):
        Pipeline(PipelineOptions(fit="squash"))
