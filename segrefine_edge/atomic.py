"""Files written whole or not at all: every output (masks, stats, exports, converted models)
goes through here, so an interrupted run or a full disk never leaves half a file."""

from __future__ import annotations

import os
from pathlib import Path

from segrefine_edge.errors import SinkError


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename, so an interrupted run never leaves half a file.

    A failed write (a full disk) removes the temporary file and raises SinkError in one line;
    what was written before stays as it was.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SinkError(f"cannot write {path}: {exc.strerror or exc}; the files written before it are whole") from exc
