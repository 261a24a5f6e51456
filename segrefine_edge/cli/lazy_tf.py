"""Import TensorFlow only inside the commands that need it, with a message naming the extra."""

from __future__ import annotations

import importlib
import os

from segrefine_edge.errors import MissingExtraError


def require_tensorflow(command: str) -> None:
    """Raise MissingExtraError unless TensorFlow can be imported; quiets its C++ start-up logs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        importlib.import_module("tensorflow")
    except ImportError as exc:
        raise MissingExtraError(f"'{command}' needs TensorFlow, which is not installed: "
                                "pip install 'segrefine-edge[train]'") from exc
