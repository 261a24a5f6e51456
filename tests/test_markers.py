"""The test suite's own promise: `pytest -m "not train"` runs without TensorFlow, so every test
that needs it carries the `train` marker (on itself or on its module)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
_NEEDS_TF = ('importorskip("tensorflow")', "import tensorflow", "import keras")


def _marked_train(node: ast.AST) -> bool:
    return any("mark.train" in ast.unparse(decorator) for decorator in getattr(node, "decorator_list", []))


def test_every_test_that_needs_tensorflow_is_marked_train():
    unmarked = []
    for path in sorted(TESTS.rglob("test_*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        if any(isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n) and "train" in ast.unparse(n)
               for n in tree.body):
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and not _marked_train(node):
                body = ast.get_source_segment(source, node) or ""
                if any(needle in body for needle in _NEEDS_TF):
                    unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, f"need @pytest.mark.train: {unmarked}"
