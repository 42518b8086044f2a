"""Image files that ordinary writers cannot make: 16-bit colour PNGs (with PNG's row filters) and
decompression bombs (a huge image in a small file, streamed: the pixels never exist in memory)."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filter_row(row: bytes, prev: bytes, bpp: int, kind: int) -> bytes:
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
        out[i] = (x - pred) & 0xFF
    return bytes(out)


def write_png16(path: Path, image: np.ndarray) -> None:
    """uint16 HxW / HxWx2 / HxWx3 / HxWx4 as a 16-bit PNG; rows cycle through all five filters."""
    a = np.asarray(image, dtype=">u2")
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    bpp = 2 * c
    raw, prev = bytearray(), bytes(w * bpp)
    for y in range(h):
        row = a[y].tobytes()
        kind = y % 5
        raw += bytes([kind]) + _filter_row(row, prev, bpp, kind)
        prev = row
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(bytes(raw))) + _chunk(b"IEND", b""))


def write_bomb_png(path: Path, width: int, height: int, *, pixels: bool = True) -> int:
    """A grey 8-bit PNG of width x height, all black, compressed row by row (the image never exists
    in memory); ``pixels=False`` writes only the header (for limits that must refuse it unread).
    Returns the file size."""
    co = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte 0, then black
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        if pixels:
            batch = max(1, (4 << 20) // len(row))
            for y in range(0, height, batch):
                data = co.compress(row * min(batch, height - y))
                if data:
                    f.write(_chunk(b"IDAT", data))
            f.write(_chunk(b"IDAT", co.flush()))
        else:
            f.write(_chunk(b"IDAT", zlib.compress(row)))
        f.write(_chunk(b"IEND", b""))
    return path.stat().st_size
