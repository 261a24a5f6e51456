"""Run a segmentation model on BGR frames: preprocess, invoke, read class scores or labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from segrefine_edge.backend import Backend, TensorInfo, open_backend
from segrefine_edge.contract import ModelContract, resolve_contract
from segrefine_edge.postprocess import labels_at
from segrefine_edge.preprocess import resize_image
from segrefine_edge.quant import pixel_mapping, pixels_to_tensor
from segrefine_edge.scores import ScoreMap


class Segmenter:
    """A segmentation model with its contract: ``scores(frame_bgr)`` returns a ScoreMap.

    Frames are BGR uint8 (OpenCV's order) of any size; they are resized to the model's input.
    """

    def __init__(self, backend: Backend, contract: ModelContract) -> None:
        self.backend = backend
        self.contract = contract
        self.input: TensorInfo = backend.inputs[0]
        self.output: TensorInfo = backend.outputs[0]
        self._input_map = pixel_mapping(contract, self.input)

    @classmethod
    def open(cls, path: str | Path, runtime: str = "auto", delegate: str = "auto", threads: int = 2,
             overrides: dict[str, Any] | None = None) -> Segmenter:
        backend = open_backend(path, runtime, delegate, threads)
        return cls(backend, resolve_contract(backend, overrides))

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Resize, reorder colours and normalise/quantise a BGR frame into the input tensor."""
        return self.to_tensor(self.resize(frame_bgr))

    def resize(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The BGR frame at the model's input size (the refiner can reuse it: shrinking it
        further by a whole factor is much cheaper than shrinking the frame again)."""
        return resize_image(frame_bgr, self.contract.input_hw)

    def to_tensor(self, resized_bgr: np.ndarray) -> np.ndarray:
        """A BGR image at the model's input size as the input tensor (batch of one)."""
        image = resized_bgr
        if self.contract.color_order == "RGB":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return pixels_to_tensor(image, self._input_map, self.input)[None]

    def invoke(self, tensor: np.ndarray) -> ScoreMap:
        """Run the model on a preprocessed tensor; returns the output at model resolution."""
        self.backend.set_input(0, tensor)
        self.backend.invoke()
        out = self.backend.output(0)[0]
        kind = self.contract.output_kind
        if kind in ("sigmoid", "labels") and out.ndim == 3:
            out = out[..., 0]
        scale, zero = (self.output.scale, self.output.zero_point) if self.output.quantized else (0.0, 0)
        return ScoreMap(kind, out, scale, zero)

    def scores(self, frame_bgr: np.ndarray) -> ScoreMap:
        return self.invoke(self.preprocess(frame_bgr))

    def segment(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Class labels at the frame's own size."""
        return labels_at(self.scores(frame_bgr), (frame_bgr.shape[1], frame_bgr.shape[0]))
