"""The model contract and segmenter on every peer model in ../shared/peers."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from segrefine_edge.errors import ModelError
from segrefine_edge.postprocess import labels_at
from segrefine_edge.scores import ScoreMap
from segrefine_edge.segmenter import Segmenter

# LiteRT's own features (its GPU accelerator, its compiled-model API, MediaPipe's custom ops): CI's
# second environment runs the rest of these tests through tflite-runtime alone
needs_litert = pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                  reason="LiteRT-only behaviour; this environment runs tflite-runtime")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def cityscapes_image(peers):
    return cv2.imread(str(peers / "coral" / "cityscapes_segmentation.bmp"))


@pytest.fixture(scope="module")
def cityscapes_labels(cityscapes_model, cityscapes_image):
    return Segmenter.open(cityscapes_model).segment(cityscapes_image)


@pytest.fixture(scope="module")
def street_frame(vtest):
    capture = cv2.VideoCapture(str(vtest))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 200)
    ok, frame = capture.read()
    assert ok
    return frame


def test_cityscapes_model_matches_corals_reference_mask(peers, cityscapes_labels):
    reference = cv2.imread(str(peers / "coral" / "cityscapes_segmentation_mask.bmp"), cv2.IMREAD_GRAYSCALE)
    agreement = float(np.mean(cityscapes_labels == reference))
    assert agreement >= 0.90, agreement


def test_cityscapes_contract_from_tensors_and_catalogue(cityscapes_model):
    contract = Segmenter.open(cityscapes_model).contract
    assert contract.output_kind == "labels"
    assert contract.labels[13] == "car" and len(contract.labels) == 19
    assert contract.source[0] == "tensors"


@pytest.mark.parametrize(
    "model,car_index,min_iou",
    [
        ("coral/deeplabv3_mnv2_pascal_quant.tflite", 7, 0.7),
        ("coral/deeplabv3_mnv2_dm05_pascal_quant.tflite", 7, 0.7),
        ("tflite-example/deeplabv3_257_mv_gpu.tflite", 7, 0.35),
    ],
)
def test_voc_models_find_the_cars(peers, model, car_index, min_iou, cityscapes_image, cityscapes_labels):
    """uint8 input with ArgMax int64 out, and float [-1,1] input with logits out."""
    segmenter = Segmenter.open(peers / model)
    labels = segmenter.segment(cityscapes_image)
    assert labels.shape == cityscapes_image.shape[:2]
    assert segmenter.contract.labels[car_index] == "car"
    assert _iou(labels == car_index, cityscapes_labels == 13) >= min_iou


@needs_litert
def test_mediapipe_selfie_finds_the_pedestrians(peers, street_frame, cityscapes_model):
    """float [0,1] input with a single sigmoid channel out."""
    segmenter = Segmenter.open(peers / "mediapipe" / "selfie_segmentation.tflite")
    assert segmenter.contract.output_kind == "sigmoid"
    person = segmenter.segment(street_frame) == 1
    reference = Segmenter.open(cityscapes_model).segment(street_frame) == 11
    assert 0.01 < person.mean() < 0.2
    assert _iou(person, reference) >= 0.15


@needs_litert
def test_mediapipe_landscape_contract(peers, street_frame):
    """At 144x256 the street's pedestrians are a few pixels tall: only the contract is checked."""
    segmenter = Segmenter.open(peers / "mediapipe" / "selfie_segmentation_landscape.tflite")
    assert segmenter.contract.input_hw == (144, 256)
    assert segmenter.contract.labels == ["background", "person"]
    assert segmenter.segment(street_frame).shape == street_frame.shape[:2]


def test_unknown_class_name_lists_the_choices(cityscapes_model):
    contract = Segmenter.open(cityscapes_model).contract
    assert contract.class_index("Car") == 13
    with pytest.raises(ModelError, match="not one of this model's classes: road, sidewalk"):
        contract.class_index("unicorn")


def test_label_count_must_match_channels(peers):
    with pytest.raises(ModelError, match="21 output channels but 2 labels"):
        Segmenter.open(peers / "tflite-example" / "deeplabv3_257_mv_gpu.tflite", overrides={"labels": ["a", "b"]})


def test_quantised_preprocess_feeds_raw_pixels(cityscapes_model):
    """Coral's uint8 input (scale 1/128, zero point 128) takes pixels as they are."""
    segmenter = Segmenter.open(cityscapes_model)
    frame = np.random.default_rng(0).integers(0, 256, (513, 513, 3), dtype=np.uint8)
    tensor = segmenter.preprocess(frame)
    assert tensor.dtype == np.uint8 and tensor.shape == (1, 513, 513, 3)
    assert np.array_equal(tensor[0], cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))


def test_quantised_input_with_its_own_range_gets_mapped_pixels():
    """An int8 input whose scale and zero point do not fit raw pixels: each pixel becomes
    ``a * pixel + b`` raw integers, rounded and clipped, quantised once."""
    from segrefine_edge.backend import TensorInfo
    from segrefine_edge.contract import ModelContract
    from segrefine_edge.quant import pixel_mapping, pixels_to_tensor

    tensor = TensorInfo(0, "image", (1, 1, 3, 3), np.dtype(np.int8), 2.0 / 255.0, -128)
    contract = ModelContract(input_scale=1.0 / 255.0, input_offset=0.0)      # the model expects 0-1
    mapping = pixel_mapping(contract, tensor)
    assert mapping == pytest.approx((0.5, -128.0))
    image = np.array([[[0, 101, 255], [254, 2, 3], [7, 8, 9]]], np.uint8)
    expected = np.clip(np.rint(image.astype(np.float32) * 0.5 - 128), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(pixels_to_tensor(image, mapping, tensor), expected)


@settings(max_examples=30, deadline=None)
@given(
    scale=st.floats(0.01, 1.0),
    zero=st.integers(-128, 127),
    seed=st.integers(0, 1000),
)
def test_quantised_argmax_equals_float_argmax(scale, zero, seed):
    """Resizing and argmaxing raw int8 scores gives the labels of the dequantised scores."""
    values = np.random.default_rng(seed).integers(-128, 128, (9, 7, 5), dtype=np.int8)
    quantised = ScoreMap("logits", values, scale, zero)
    real = ScoreMap("logits", quantised.real())
    assert np.array_equal(labels_at(quantised, (7, 9)), labels_at(real, (7, 9)))
    assert labels_at(quantised, (21, 27)).shape == (27, 21)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([0.0, 0.02, 0.2, 0.5]), st.integers(-128, 127), st.floats(0.1, 500.0), st.integers(0, 2**31 - 1))
def test_softmax_matches_the_reference_and_never_overflows(scale, zero, spread, seed):
    rng = np.random.default_rng(seed)
    if scale:
        scores = ScoreMap("logits", rng.integers(-128, 128, (6, 5, 11)).astype(np.int8), scale, zero)
    else:
        scores = ScoreMap("logits", rng.normal(0, spread, (6, 5, 11)).astype(np.float32))
    x = scores.real().astype(np.float64)
    expected = np.exp(x - x.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    probabilities = scores.probabilities()
    assert probabilities.dtype == np.float32 and np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.floats(0.01, 0.5), st.integers(-128, 255), st.sampled_from([np.int8, np.uint8]), st.integers(0, 2**31 - 1))
@example(scale=0.296875, zero=-44, dtype=np.uint8, seed=0)
def test_the_softmax_of_8_bit_logits_by_table_is_that_of_their_real_values_to_the_bit(scale, zero, dtype, seed):
    """The runtime looks exp() up in a 256-entry table for 8-bit logits (int8 from our models,
    uint8 from Coral's): the same probabilities as exp() of the dequantised map, every bit, when
    no code can overflow exp(); finite and right whatever the scale and zero point (a uint8 map
    with zero point -44 and scale 0.297 once overflowed to NaN)."""
    info = np.iinfo(dtype)
    values = np.random.default_rng(seed).integers(info.min, info.max + 1, (7, 6, 11)).astype(dtype)
    quantised = ScoreMap("logits", values, scale, zero)
    probabilities = quantised.probabilities()
    real = quantised.real().astype(np.float64)
    expected = np.exp(real - real.max(-1, keepdims=True))
    np.testing.assert_allclose(probabilities, expected / expected.sum(-1, keepdims=True), atol=1e-5)
    reach = max(abs(info.min - zero), abs(info.max - zero)) * scale
    if reach < 80:
        exp = np.exp(quantised.real())
        assert np.array_equal(probabilities, exp / (exp @ np.ones(11, np.float32))[..., None])


def test_probabilities_sum_to_one():
    scores = ScoreMap("logits", np.random.default_rng(1).normal(size=(4, 5, 3)).astype(np.float32))
    assert np.allclose(scores.probabilities().sum(-1), 1.0, atol=1e-5)
    sigmoid = ScoreMap("sigmoid", np.full((2, 2), 0.25, np.float32))
    assert np.allclose(sigmoid.probabilities()[..., 1], 0.25)
    assert labels_at(sigmoid, (2, 2)).max() == 0


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 40), st.integers(2, 40), st.integers(2, 300), st.sampled_from([np.uint8, np.float32]),
       st.integers(0, 2**31 - 1))
def test_upsampled_labels_are_the_argmax_of_the_bilinearly_upsampled_scores(h, w, classes, dtype, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, (h, w, classes)).astype(dtype)
    out_w, out_h = 3 * w + 1, 2 * h + 3
    planes = [cv2.resize(np.ascontiguousarray(values[..., c]), (out_w, out_h), interpolation=cv2.INTER_LINEAR)
              for c in range(classes)]
    expected = np.argmax(np.stack(planes, axis=-1), axis=-1)
    labels = labels_at(ScoreMap("logits", values), (out_w, out_h))
    assert labels.shape == (out_h, out_w) and np.array_equal(labels, expected)
    assert labels.dtype == (np.uint8 if classes <= 256 else np.uint16)


def test_runtime_resizes_like_calibration_when_one_side_shrinks():
    """CamVid's 480x360 frames go into a 480x352 model: the runtime must area-average them as
    calibration and validation do (it once resized them bilinearly, mixing resize differences
    into the measured conversion error)."""
    from segrefine_edge.preprocess import resize_image

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)
    area = cv2.resize(frame, (480, 352), interpolation=cv2.INTER_AREA)
    assert np.array_equal(resize_image(frame, (352, 480)), area)
    assert resize_image(frame, (360, 480)) is frame
    grown = resize_image(frame[:100, :100], (200, 150))
    assert np.array_equal(grown, cv2.resize(frame[:100, :100], (150, 200), interpolation=cv2.INTER_LINEAR))
