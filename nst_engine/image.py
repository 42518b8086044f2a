"""Image files and array conversions: read safely, write atomically, resize.

Arrays are float32 HxWxC in 0..1 (C = 3, or 4 with alpha); tensors are (1,3,H,W) RGB 0..255.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .arrays import to_unit_float
from .config import MAX_PIXELS
from .errors import InputError

if TYPE_CHECKING:  # torch only where tensors are made: the model path runs without it
    import torch

WRITABLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP"}
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb check; `nst_engine.decode` checks headers first


def read_image(path: str | os.PathLike[str], argument: str = "image", *, max_side: int | None = None) -> np.ndarray:
    """Read an image file as float32 HxWx3 or HxWx4 (alpha kept) in 0..1.

    Grayscale becomes RGB; 16-bit (PNG, TIFF) and float (TIFF) images keep their precision.
    Only regular files are read, and images over `MAX_PIXELS` are refused from their header.
    ``max_side``: the caller will shrink the image to this long side, so a large image may be
    decoded reduced (its long side stays at least twice ``max_side``; see `nst_engine.decode`).
    """
    from .decode import decode

    return decode(path, argument, max_side).image


def read_image_at(path: str | os.PathLike[str], argument: str, long_side: int) -> np.ndarray:
    """The image at exactly `fit_long_side` of its file size when that shrinks it (decoded
    reduced first, then an antialiased resize), else as it is in the file."""
    from .decode import decode

    d = decode(path, argument, long_side)
    target = fit_long_side(*d.size, long_side)
    if max(d.size) <= long_side or d.image.shape[:2] == target:
        return d.image
    from .resample import resize

    out: np.ndarray = np.clip(resize(d.image, *target), 0.0, 1.0)
    return out


def check_output_path(path: str | os.PathLike[str], argument: str = "output") -> Path:
    """Fail before any work if the output cannot be written."""
    p = Path(path)
    if p.suffix.lower() not in WRITABLE:
        raise InputError(argument, str(path), f"unknown image type; use one of {', '.join(sorted(WRITABLE))}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(argument, str(path), f"folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(argument, str(path), f"folder {parent} is not writable")
    if p.is_dir():
        raise InputError(argument, str(path), "is a folder")
    return p


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write float 0..1 HxWx3/4 (or uint8) atomically: a temp file in the same folder, then rename.

    TIFF is written with 16 bits per channel (unless ``image`` is uint8), so a 16-bit photo keeps
    its precision; the other formats are 8-bit. PNG is written fast (zlib level 1, `pngwrite`).
    """
    p = check_output_path(path)
    fmt = WRITABLE[p.suffix.lower()]
    deep = fmt == "TIFF" and image.dtype != np.uint8
    if deep:
        arr = (np.clip(image, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    else:
        arr = image if image.dtype == np.uint8 else (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    mode = {3: "RGB", 4: "RGBA"}[arr.shape[2]]
    if fmt == "JPEG" and mode == "RGBA":
        arr, mode = arr[..., :3], "RGB"
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent if str(p.parent) else ".")
    try:
        if deep:
            import tifffile

            os.close(fd)
            tifffile.imwrite(tmp, np.ascontiguousarray(arr), photometric="rgb", compression="zlib",
                             extrasamples=["unassalpha"] if mode == "RGBA" else None)
        else:
            with os.fdopen(fd, "wb") as f:
                if fmt == "PNG":  # OpenCV's speed settings, on all cores (see pngwrite.py)
                    from .pngwrite import write_png

                    write_png(f, arr)
                else:
                    Image.fromarray(np.ascontiguousarray(arr), mode).save(f, fmt)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a new image gets the usual mode
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def check_array(image: np.ndarray, argument: str) -> np.ndarray:
    """Validate an API image: HxWx3 or HxWx4 (alpha dropped), HxW gray, finite; returns float32 RGB."""
    if not isinstance(image, np.ndarray):
        raise InputError(argument, type(image).__name__, "must be a numpy array")
    a = image
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(argument, a.shape, "must be HxW, HxWx1, HxWx3 or HxWx4")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InputError(argument, a.shape, "image has no pixels")
    return to_unit_float(a[..., :3], argument)


def fit_long_side(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) scaled so that the long side is ``size`` (each side at least 1)."""
    s = size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def to_tensor(image: np.ndarray, shape: tuple[int, int] | None, device: torch.device) -> torch.Tensor:
    """HxWx3 0..1 array → (1,3,h,w) RGB 0..255 tensor, resized (antialiased bicubic) to ``shape``."""
    import torch
    from torch.nn import functional as F

    t = torch.from_numpy(np.ascontiguousarray(image[..., :3], dtype=np.float32)).permute(2, 0, 1)[None] * 255.0
    if shape is not None and tuple(t.shape[2:]) != tuple(shape):
        t = F.interpolate(t, size=shape, mode="bicubic", align_corners=False, antialias=True).clamp(0, 255)
    return t.to(device)
