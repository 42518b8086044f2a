"""Reading image files safely: regular files only, the pixel limit from the header, reduced decoding.

* Only regular files are opened (a FIFO or a device would block the reader forever), without
  following the name twice: the file is opened non-blocking and then checked with ``fstat``.
* The pixel limit (`MAX_PIXELS`, 400 MP) is enforced from the header, before any decoding:
  Pillow itself only warns up to twice its limit, and decoding costs many bytes per pixel.
* ``max_side``: the caller will shrink the image to at most this long side, so a large file is
  decoded reduced: JPEG by its DCT scaling (``draft``), other formats at their own bit depth
  followed by a box reduction (Pillow's ``reduce``), never below twice ``max_side`` (the final,
  antialiased resize is the caller's). A 19000² grey PNG then needs ~0.4 GB instead of ~10 GB.
* 16-bit PNG colour keeps its 16 bits (Pillow alone reads it as 8-bit): Pillow's own PNG decoder
  runs twice, once keeping each sample's high byte and once its low byte.
* TIFF goes through tifffile (16-bit and float colour); a float image with NaN or infinite
  pixels is reported as such.
"""
from __future__ import annotations

import contextlib
import math
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import MAX_PIXELS
from .errors import InputError

Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own check (it raises only at twice this)
_PNG16 = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}  # high-byte raw mode -> low-byte raw mode


@dataclass(frozen=True)
class Decoded:
    image: np.ndarray  # float32 HxWx3 or HxWx4 in 0..1 (possibly reduced)
    size: tuple[int, int]  # (height, width) of the image in the file


def decode(path: str | os.PathLike[str], argument: str = "image", max_side: int | None = None) -> Decoded:
    """Read an image file as float32 HxWx3 / HxWx4 (alpha kept) in 0..1; see the module doc."""
    p = Path(path)
    with _errors(argument, p), _open_regular(p, argument) as fh:
        out = _read_tiff(fh, p, argument, max_side) if p.suffix.lower() in (".tif", ".tiff") else None
        if out is None:
            fh.seek(0)
            out = _read_pillow(fh, p, argument, max_side)
    if out.image.shape[0] < 1 or out.image.shape[1] < 1:
        raise InputError(argument, str(path), "image has no pixels")
    return out


@contextlib.contextmanager
def _errors(argument: str, p: Path) -> Iterator[None]:
    """Decoder failures as an InputError naming the argument and the file."""
    try:
        yield
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(argument, str(p), "not an image file (or a format Pillow cannot read)") from None
    except Image.DecompressionBombError as e:
        raise InputError(argument, str(p), f"image too large ({e})") from None
    except PermissionError:
        raise InputError(argument, str(p), "cannot be read (permission denied)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise InputError(argument, str(p), f"corrupt or truncated image ({e})") from None


def _open_regular(p: Path, argument: str) -> IO[bytes]:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise InputError(argument, str(p), "no such file") from None
    except IsADirectoryError:
        raise InputError(argument, str(p), "is a folder, not an image file") from None
    except PermissionError:
        raise InputError(argument, str(p), "cannot be read (permission denied)") from None
    except OSError as e:
        raise InputError(argument, str(p), f"cannot be opened ({e.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InputError(argument, str(p), "is a folder, not an image file")
        raise InputError(argument, str(p), "is not a regular file (a pipe, device or socket); give an image file")
    return os.fdopen(fd, "rb")


def check_pixels(argument: str, path: str, width: int, height: int) -> None:
    """The limit, from the header's size (before any pixel is decoded)."""
    if width * height > MAX_PIXELS:
        raise InputError(argument, path, f"image too large: {width}x{height} = {width * height / 1e6:.0f} MP; "
                                         f"the limit is {MAX_PIXELS / 1e6:.0f} MP")


def reduce_factor(height: int, width: int, max_side: int | None) -> int:
    """The integer box reduction that keeps the long side at least twice ``max_side``."""
    if not max_side or max_side <= 0:
        return 1
    return max(1, max(height, width) // (2 * max_side))


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Mean of f×f blocks (partial ones at the right and bottom too, as Pillow's reduce), float32."""
    if f <= 1:
        return a.astype(np.float32)
    rows = np.add.reduceat(a, np.arange(0, a.shape[0], f), axis=0, dtype=np.float64)
    sums = np.add.reduceat(rows, np.arange(0, a.shape[1], f), axis=1)
    n_r = np.minimum(f, a.shape[0] - np.arange(0, a.shape[0], f)).astype(np.float64)
    n_c = np.minimum(f, a.shape[1] - np.arange(0, a.shape[1], f)).astype(np.float64)
    counts = n_r[:, None] * n_c[None, :]
    mean: np.ndarray = (sums / (counts[..., None] if a.ndim == 3 else counts)).astype(np.float32)
    return mean


def _nan_error(argument: str, path: Path) -> InputError:
    return InputError(argument, str(path), "contains NaN or infinite values (a floating-point image with "
                                           "undefined pixels); replace them (e.g. with 0) first")


def _unit(a: np.ndarray, scale: float) -> np.ndarray:
    """uint array → float32 / scale, without an intermediate float64 copy."""
    out = np.empty(a.shape, np.float32)
    np.divide(a, np.float32(scale), out=out, dtype=np.float32)
    return out


def _finish(gray_or_rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """HxW gray or HxWx3 (+ HxW alpha) float32 → HxWx3 or HxWx4, clipped to 0..1."""
    a = gray_or_rgb
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if alpha is not None:
        a = np.concatenate([a, alpha[..., None]], axis=2)
    np.clip(a, 0.0, 1.0, out=a)
    return a


# --------------------------------------------------------------------------------------------
# TIFF (tifffile: 16-bit and float colour)
# --------------------------------------------------------------------------------------------

def _read_tiff(fh: IO[bytes], p: Path, argument: str, max_side: int | None) -> Decoded | None:
    """A TIFF with its full precision; None to let Pillow try."""
    import tifffile

    try:
        with tifffile.TiffFile(fh, name=str(p)) as tf:
            page = tf.pages[0]
            shape = tuple(page.shape)
            hw = _tiff_hw(shape)
            if hw is not None:
                check_pixels(argument, str(p), hw[1], hw[0])
            a = page.asarray()
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - not a TIFF tifffile handles: Pillow gets its turn
        return None
    if a.ndim == 3 and a.shape[0] in (3, 4) and a.shape[2] not in (3, 4):
        a = np.moveaxis(a, 0, 2)  # planar
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        return None
    size = (int(a.shape[0]), int(a.shape[1]))
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise _nan_error(argument, p)
    f = reduce_factor(*size, max_side)
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    if f > 1:
        a = block_mean(a, f)
    out = a.astype(np.float32) / np.float32(scale) if a.dtype != np.float32 or scale != 1.0 else a
    gray = out.shape[2] <= 2
    rgb = out[..., 0] if gray else out[..., :3]
    alpha = out[..., 1] if out.shape[2] == 2 else out[..., 3] if out.shape[2] == 4 else None
    return Decoded(_finish(np.array(rgb, np.float32), None if alpha is None else np.array(alpha, np.float32)), size)


def _tiff_hw(shape: tuple[int, ...]) -> tuple[int, int] | None:
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 3:
        return (shape[1], shape[2]) if shape[0] in (3, 4) and shape[2] not in (3, 4) else (shape[0], shape[1])
    return None


# --------------------------------------------------------------------------------------------
# everything else (Pillow)
# --------------------------------------------------------------------------------------------

def _read_pillow(fh: IO[bytes], p: Path, argument: str, max_side: int | None) -> Decoded:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(fh)  # reads the header only
    with im:
        w, h = im.size
        check_pixels(argument, str(p), w, h)
        f = reduce_factor(h, w, max_side)
        rawmode = im.tile[0].args if im.format == "PNG" and len(im.tile) == 1 else None
        if isinstance(rawmode, str) and (rawmode in _PNG16 or rawmode == "LA;16B"):
            return Decoded(_png16(fh, im, rawmode, f), (h, w))
        if im.format == "JPEG" and f > 1:
            im.draft(im.mode, (math.ceil(w / f), math.ceil(h / f)))  # DCT scaling: 1/2, 1/4 or 1/8
        im.load()  # decodes now, so truncated files fail here
        return Decoded(_pil_to_array(im, reduce_factor(im.size[1], im.size[0], max_side), p, argument), (h, w))


def _png16(fh: IO[bytes], im: Any, rawmode: str, f: int) -> np.ndarray:
    """A 16-bit colour PNG with all its bits: Pillow's decoder keeps one byte of each 16-bit sample
    per pass (the high byte, then, told the samples are little-endian, the low byte); 16-bit grey
    with alpha (4 bytes a pixel) decodes exactly as 8-bit RGBA."""
    if rawmode == "LA;16B":
        im.tile = [im.tile[0]._replace(args="RGBA")]
        im.load()
        b = np.asarray(im).astype(np.uint16)
        a = np.stack([b[..., 0] << 8 | b[..., 1], b[..., 2] << 8 | b[..., 3]], axis=2)
    else:
        im.load()
        hi = np.asarray(im)
        fh.seek(0)
        with Image.open(fh) as im2:
            im2.tile = [im2.tile[0]._replace(args=_PNG16[rawmode])]
            im2.load()
            lo = np.asarray(im2)
        a = hi.astype(np.uint16) << 8
        a |= lo
        del hi, lo
    out = block_mean(a, f) / np.float32(65535.0) if f > 1 else _unit(a, 65535.0)
    if out.shape[2] == 2:
        return _finish(out[..., 0].copy(), out[..., 1].copy())
    return _finish(np.ascontiguousarray(out[..., :3]), out[..., 3].copy() if out.shape[2] == 4 else None)


def _pil_to_array(im: Image.Image, f: int, p: Path, argument: str) -> np.ndarray:
    """A loaded Pillow image → float32 HxWx3|4 in 0..1, box-reduced by ``f`` in its own bit depth."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a16 = np.asarray(im).astype(np.uint16)
        return _finish(block_mean(a16, f) / np.float32(65535.0) if f > 1 else _unit(a16, 65535.0), None)
    if im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        has_alpha = im.mode in ("PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
        im = im.convert("RGBA" if has_alpha else ("L" if im.mode == "1" else "RGB"))
    if f > 1:
        im = im.reduce(f)
    if im.mode == "I":
        a = np.asarray(im, dtype=np.float32)
        return _finish(a / np.float32(65535.0 if a.max() > 255 else 255.0), None)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise _nan_error(argument, p)
        return _finish(a.copy(), None)
    a8 = np.asarray(im)
    if im.mode == "L":
        return _finish(_unit(a8, 255.0), None)
    if im.mode == "LA":
        return _finish(_unit(a8[..., 0], 255.0), _unit(a8[..., 1], 255.0))
    return _finish(_unit(a8, 255.0), None)  # RGB or RGBA: channels as they are


def read_8bit(path: str | os.PathLike[str], argument: str = "image") -> np.ndarray | None:
    """An 8-bit file's pixels as uint8, as laid out in the file (HxW grey, HxWx2 grey+alpha,
    HxWx3, HxWx4; palettes expanded), decoded once and without a float copy; None when the file
    holds more than 8 bits a sample (or is a TIFF): then use `decode`. Same checks as `decode`."""
    p = Path(path)
    if p.suffix.lower() in (".tif", ".tiff"):
        return None
    with _errors(argument, p), _open_regular(p, argument) as fh:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fh)
        with im:
            check_pixels(argument, str(p), *im.size)
            rawmode = im.tile[0].args if im.format == "PNG" and len(im.tile) == 1 else None
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F") or (
                    isinstance(rawmode, str) and ";16" in rawmode):
                return None
            im.load()
            pixels: Image.Image = im
            if im.mode not in ("L", "LA", "RGB", "RGBA"):
                has_alpha = im.mode in ("PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)
                pixels = im.convert("RGBA" if has_alpha else ("L" if im.mode == "1" else "RGB"))
            return np.asarray(pixels)
