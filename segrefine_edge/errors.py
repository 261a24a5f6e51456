"""Errors the library raises for bad input; the CLI maps each to a one-line message and exit code."""

from __future__ import annotations


class SegrefineError(Exception):
    """Base class: the message says what is wrong and what to do about it."""

    exit_code = 2


class ModelError(SegrefineError):
    """A model file cannot be used: not a TFLite model, wrong input, missing op or delegate."""


class DelegateError(ModelError):
    """A hardware delegate (EdgeTPU, GPU) cannot be loaded or used on this machine."""


class SourceError(SegrefineError):
    """A frame source cannot be opened or read."""


class SinkError(SegrefineError):
    """An output cannot be written."""


class DatasetError(SegrefineError):
    """A dataset folder is missing pairs, has mismatched pairs or masks with bad values."""


class MissingExtraError(SegrefineError):
    """A command needs an optional dependency (an extra) that is not installed."""


class PipelineError(SegrefineError):
    """The pipeline was used wrongly: a bad mode, a frame that is no BGR image, timestamps out of order."""
