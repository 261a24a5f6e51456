"""The runtime must import and run with TensorFlow absent (the device never has it)."""

from __future__ import annotations

import subprocess
import sys

BLOCK_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TF + code], capture_output=True, text=True, timeout=120)


def test_import_and_stream_help_never_import_tensorflow():
    result = _run(
        "import segrefine_edge, segrefine_edge.pipeline, segrefine_edge.metrics\n"
        "from click.testing import CliRunner\n"
        "from segrefine_edge.cli import main\n"
        "for cmd in ('stream', 'bench', 'eval', 'train', 'convert'):\n"
        "    r = CliRunner().invoke(main, [cmd, '--help'])\n"
        "    assert r.exit_code == 0, (cmd, r.output)\n"
        "print('ok')"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_the_runtime_never_imports_tensorflow_even_where_it_is_installed():
    """Blocking TensorFlow shows the runtime works without it; this shows it never loads it
    (seconds and hundreds of MB) where the train extra is installed, as in CI."""
    result = subprocess.run([sys.executable, "-c", (
        "import sys, numpy as np\n"
        "from click.testing import CliRunner\n"
        "from segrefine_edge import Pipeline\n"
        "from segrefine_edge.cli import main\n"
        "with Pipeline() as pipeline:\n"
        "    pipeline.segment(np.zeros((120, 160, 3), np.uint8))\n"
        "for cmd in ('stream', 'bench', 'eval', 'train', 'convert'):\n"
        "    assert CliRunner().invoke(main, [cmd, '--help']).exit_code == 0, cmd\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules))"
    )], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_train_without_tensorflow_names_the_extra():
    result = _run(
        "from click.testing import CliRunner\n"
        "from segrefine_edge.cli import main\n"
        "r = CliRunner().invoke(main, ['train', 'segmenter', '--data', '.', '--out', 'x'])\n"
        "print(r.exit_code); print(r.output)"
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "2", result.stdout + result.stderr
    assert "pip install 'segrefine-edge[train]'" in result.stdout
    assert "Traceback" not in result.stdout
