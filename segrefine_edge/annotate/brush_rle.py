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


def _pack(fields: list[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """(values, widths) pairs, in order, as one bit stream, MSB first, padded to whole bytes."""
    values = np.concatenate([v for v, _ in fields]).astype(np.int64)
    widths = np.concatenate([w for _, w in fields]).astype(np.int64)
    starts = np.cumsum(widths) - widths
    total = int(widths.sum())
    owner = np.repeat(np.arange(len(widths)), widths)
    shift = widths[owner] - 1 - (np.arange(total) - starts[owner])
    bits = ((values[owner] >> shift) & 1).astype(np.uint8)
    return np.packbits(bits).tolist()      # packbits pads the last byte with zeros


def encode(mask: np.ndarray) -> list[int]:
    """The brush RLE of a boolean HxW ``mask`` (vectorised: a 768x576 mask in a few ms)."""
    pixels = mask.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(pixels)) + 1
    starts = np.concatenate([[0], change])
    lengths = 4 * np.diff(np.concatenate([starts, [pixels.size]]))       # RGBA: each pixel four times
    values = np.where(pixels[starts] > 0, 255, 0)
    longest = 1 << RUN_FIELDS[-1]
    pieces = np.where(lengths > longest, -(-lengths // longest), 1)          # runs split to fit the widest field
    run_values = np.repeat(values, pieces)
    run_lengths = np.repeat(lengths, pieces)
    first_of_run = np.cumsum(pieces) - pieces
    piece_index = np.arange(len(run_values)) - np.repeat(first_of_run, pieces)
    run_lengths = np.minimum(run_lengths - piece_index * longest, longest)
    limits = np.array([1 << size for size in RUN_FIELDS])
    field = np.argmax((run_lengths[:, None] - 1) < limits[None, :], axis=1)
    field_bits = np.array(RUN_FIELDS)[field]
    n = len(run_values)
    per_run = np.stack([np.ones(n, np.int64), field, run_lengths - 1, run_values], axis=1).ravel()
    per_width = np.stack([np.ones(n, np.int64), np.full(n, 2), field_bits, np.full(n, WORD_BITS)], axis=1).ravel()
    header_values = np.array([4 * pixels.size, WORD_BITS - 1, *[size - 1 for size in RUN_FIELDS]])
    header_widths = np.array([32, 5, 4, 4, 4, 4])
    return _pack([(header_values, header_widths), (per_run, per_width)])


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
