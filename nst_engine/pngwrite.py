"""A fast 8-bit PNG writer: OpenCV's speed settings, compressed on all cores.

Pillow's PNG encoder picks a filter per row by trying all five (adaptive filtering), and its
default zlib level is 6: writing a 25 MP RGB image took 6.7 s at level 6 and still 3.9 s at
level 1, against 1.4 s for ``cv2.imwrite``. This writer uses OpenCV's defaults for PNG (libpng's
"Sub" filter on every row, zlib level 1, the run-length strategy), filters with numpy and
deflates independent slices of the rows in parallel threads (zlib releases the GIL), joined into
one zlib stream the way pigz does it: every slice but the last ends on a byte boundary
(``Z_SYNC_FLUSH``) and the stream ends with the Adler-32 of all the data. Any PNG reader decodes
the result; files are about the size OpenCV writes (a few % larger than Pillow's level 1).
"""
from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import numpy as np

LEVEL = 1  # zlib level (OpenCV: Z_BEST_SPEED)
STRATEGY = zlib.Z_RLE  # OpenCV: IMWRITE_PNG_STRATEGY_RLE
SLICE_BYTES = 4 << 20  # uncompressed bytes per parallel slice (the window restarts at each)
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey+alpha, RGB, RGBA


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def filtered_rows(image: np.ndarray) -> np.ndarray:
    """(h, 1 + w*c) uint8: each row's filter byte (1 = Sub) and its bytes minus the pixel's left
    neighbour's (mod 256), as PNG's Sub filter defines."""
    h, w = image.shape[:2]
    c = 1 if image.ndim == 2 else image.shape[2]
    rows = image.reshape(h, w * c)
    out = np.empty((h, 1 + w * c), np.uint8)
    out[:, 0] = 1
    out[:, 1:1 + c] = rows[:, :c]
    np.subtract(rows[:, c:], rows[:, :-c], out=out[:, 1 + c:])
    return out


def _cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _deflate(piece: memoryview, last: bool) -> bytes:
    co = zlib.compressobj(LEVEL, zlib.DEFLATED, -15, 9, STRATEGY)
    return co.compress(piece) + co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def zlib_stream(data: memoryview, threads: int | None = None) -> list[bytes]:
    """``data`` compressed as one zlib stream, in pieces (header, deflated slices, Adler-32)."""
    n = len(data)
    bounds = list(range(0, n, SLICE_BYTES)) or [0]
    pieces = [(data[a:a + SLICE_BYTES], a + SLICE_BYTES >= n) for a in bounds]
    workers = max(1, min(len(pieces), threads or _cpus()))
    if workers == 1:
        deflated = [_deflate(p, last) for p, last in pieces]
    else:
        with ThreadPoolExecutor(workers) as pool:
            deflated = list(pool.map(lambda item: _deflate(*item), pieces))
    return [b"\x78\x01", *deflated, struct.pack(">I", zlib.adler32(data))]


def write_png(fh: BinaryIO, image: np.ndarray, threads: int | None = None) -> None:
    """Write uint8 HxW, HxWx1..4 ``image`` as a PNG to the binary file ``fh``."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in _COLOR_TYPE):
        raise ValueError(f"write_png takes uint8 HxW or HxWx1..4, not {image.dtype} {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    h, w = image.shape[:2]
    c = 1 if image.ndim == 2 else image.shape[2]
    raw = filtered_rows(np.ascontiguousarray(image))
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0)
    fh.write(_SIGNATURE + _chunk(b"IHDR", header))
    for piece in zlib_stream(raw.data.cast("B"), threads):
        fh.write(_chunk(b"IDAT", piece))
    fh.write(_chunk(b"IEND", b""))
