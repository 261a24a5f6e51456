"""Label Studio's brush RLE: the run-length format its BrushLabels read (thi.ng's rle-pack).

A mask is flattened as RGBA (each pixel's value four times, 0 or 255) and packed as a bit
stream: the value count (32 bits), the word size minus one (5 bits), four run-length field
sizes minus one (4 bits each), then runs. A run here is always a repeat: one bit set, two bits
choosing the length field, the length minus one in that field, the value in one word. The
stream is padded to whole bytes, most significant bit first; Label Studio stores the bytes as
a list of integers.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 8
RUN_FIELDS = (3, 4, 8, 16)          # Label Studio's own choice of length-field sizes


class _Bits:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def write(self, value: int, width: int) -> None:
        self.bits.extend((value >> shift) & 1 for shift in range(width - 1, -1, -1))

    def to_bytes(self) -> list[int]:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return np.packbits(np.asarray(padded, np.uint8)).tolist()


def encode(mask: np.ndarray) -> list[int]:
    """The brush RLE of a boolean HxW ``mask``."""
    flat = np.repeat(np.where(mask.ravel(), 255, 0).astype(np.uint8), 4)
    out = _Bits()
    out.write(flat.size, 32)
    out.write(WORD_BITS - 1, 5)
    for size in RUN_FIELDS:
        out.write(size - 1, 4)
    longest = 1 << RUN_FIELDS[-1]
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [flat.size]])
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        value = int(flat[start])
        remaining = end - start
        while remaining:
            run = min(remaining, longest)
            field = next(i for i, size in enumerate(RUN_FIELDS) if run - 1 < (1 << size))
            out.write(1, 1)
            out.write(field, 2)
            out.write(run - 1, RUN_FIELDS[field])
            out.write(value, WORD_BITS)
            remaining -= run
    return out.to_bytes()


def decode(rle: list[int], shape: tuple[int, int]) -> np.ndarray:
    """The boolean HxW mask of a brush RLE (literal runs too, as Label Studio writes them)."""
    bits = np.unpackbits(np.asarray(rle, np.uint8))
    position = 0

    def read(width: int) -> int:
        nonlocal position
        value = 0
        for bit in bits[position:position + width]:
            value = (value << 1) | int(bit)
        position += width
        return value

    count = read(32)
    word = read(5) + 1
    fields = [read(4) + 1 for _ in range(4)]
    out = np.zeros(count, np.uint8)
    i = 0
    while i < count:
        repeat = read(1)
        end = i + 1 + read(fields[read(2)])
        if repeat:
            out[i:end] = read(word)
        else:
            for j in range(i, end):
                out[j] = read(word)
        i = end
    return out[::4].reshape(shape) > 127
