"""Helpers for the native libraries behind the runtimes: probing them and keeping their logs off the terminal."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO


def library_present(name: str) -> bool:
    """Whether the dynamic loader can open ``name``; probed before load_delegate, which leaves a
    half-built delegate behind (and noise on stderr) when the library is missing."""
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def _flush_c_streams() -> None:
    # C libraries write through stdio buffers: flush them so each line lands where its fd pointed.
    ctypes.CDLL(None).fflush(None)


@contextmanager
def native_output_to(sink: IO[bytes]) -> Iterator[None]:
    """Send file descriptors 1 and 2 (where C++ libraries log) to ``sink`` for the block's duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    _flush_c_streams()
    saved = [os.dup(fd) for fd in (1, 2)]
    for fd in (1, 2):
        os.dup2(sink.fileno(), fd)
    try:
        yield
    finally:
        _flush_c_streams()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


def silence_native_output() -> None:
    """Point file descriptors 1 and 2 at /dev/null for good, after flushing what Python and C hold:
    for libraries that log while Python exits."""
    sys.stdout.flush()
    sys.stderr.flush()
    _flush_c_streams()
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)
