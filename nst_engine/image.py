"""Image files and array conversions: read safely, write atomically, resize.

Arrays are float32 HxWxC in 0..1 (C = 3, or 4 with alpha); tensors are (1,3,H,W) RGB 0..255.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.nn import functional as F

from .arrays import to_unit_float
from .errors import InputError

WRITABLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".bmp": "BMP"}
Image.MAX_IMAGE_PIXELS = 400_000_000  # refuse decompression bombs beyond 20000x20000


def read_image(path: str | os.PathLike[str], argument: str = "image") -> np.ndarray:
    """Read an image file as float32 HxWx3 or HxWx4 (alpha kept) in 0..1.

    Grayscale becomes RGB; 16-bit and float grayscale keep their precision.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(argument, str(path), "no such file")
    if p.is_dir():
        raise InputError(argument, str(path), "is a folder, not an image file")
    try:
        with Image.open(p) as im:
            im.load()  # decodes now, so truncated files fail here
            arr = _to_array(im)
    except UnidentifiedImageError:
        raise InputError(argument, str(path), "not an image file (or a format Pillow cannot read)") from None
    except PermissionError:
        raise InputError(argument, str(path), "cannot be read (permission denied)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(argument, str(path), f"corrupt or truncated image ({e})") from None
    except Image.DecompressionBombError as e:
        raise InputError(argument, str(path), f"image too large ({e})") from None
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InputError(argument, str(path), "image has no pixels")
    return arr


def _to_array(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float32)
        a = a / (65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0)
        return np.repeat(a[..., None], 3, axis=2).clip(0, 1)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return np.repeat(a[..., None], 3, axis=2).clip(0, 1)
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    im = im.convert("RGBA" if has_alpha else "RGB")
    return np.asarray(im, dtype=np.float32) / 255.0


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
    """Write float 0..1 HxWx3/4 (or uint8) atomically: a temp file in the same folder, then rename."""
    p = check_output_path(path)
    arr = image if image.dtype == np.uint8 else (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    mode = {3: "RGB", 4: "RGBA"}[arr.shape[2]]
    fmt = WRITABLE[p.suffix.lower()]
    if fmt == "JPEG" and mode == "RGBA":
        arr, mode = arr[..., :3], "RGB"
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent if str(p.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
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
    t = torch.from_numpy(np.ascontiguousarray(image[..., :3], dtype=np.float32)).permute(2, 0, 1)[None] * 255.0
    if shape is not None and tuple(t.shape[2:]) != tuple(shape):
        t = F.interpolate(t, size=shape, mode="bicubic", align_corners=False, antialias=True).clamp(0, 255)
    return t.to(device)
