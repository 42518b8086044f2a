"""Images that need no download: scikit-image's photos and the styles this project ships.

``sample:astronaut`` (or chelsea, coffee, rocket, …) reads a photo from the scikit-image wheel;
``style:NAME`` reads a style image from ``nst_engine/data/styles``. Anything else is a path.
"""
from __future__ import annotations

from importlib import resources

import numpy as np

from .errors import InputError
from .decode import decode
from .image import read_image_at

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "cat", "camera", "hubble_deep_field", "immunohistochemistry")


def builtin_styles() -> list[str]:
    folder = resources.files("nst_engine") / "data" / "styles"
    return sorted(p.name.rsplit(".", 1)[0] for p in folder.iterdir() if p.name.endswith((".png", ".jpg")))


def load(spec: str, argument: str, *, max_side: int | None = None, exact: bool = False) -> np.ndarray:
    """An image as float32 HxWx3/4 in 0..1, from a ``sample:``/``style:`` name or a file path.

    ``max_side``: the caller shrinks the image to this long side, so a large file may be decoded
    reduced (`read_image`); with ``exact``, a larger file comes back at exactly that long side
    (`read_image_at`).
    """
    if exact and max_side and not spec.startswith(("sample:", "style:")):
        return read_image_at(spec, argument, max_side)
    return load_sized(spec, argument, max_side=max_side)[0]


def load_sized(spec: str, argument: str, *, max_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """`load`, and the (height, width) of the image before any reduced decoding."""
    if spec.startswith("sample:"):
        name = spec[len("sample:"):]
        if name not in SAMPLES:
            raise InputError(argument, spec, f"unknown sample; choose from {', '.join(SAMPLES)}")
        from skimage import data

        arr = np.asarray(getattr(data, name)())
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        return arr[..., :3].astype(np.float32) / 255.0, (int(arr.shape[0]), int(arr.shape[1]))
    if spec.startswith("style:"):
        name = spec[len("style:"):]
        folder = resources.files("nst_engine") / "data" / "styles"
        for ext in (".png", ".jpg"):
            path = folder / f"{name}{ext}"
            if path.is_file():
                with resources.as_file(path) as p:
                    d = decode(p, argument, max_side)
                    return d.image, d.size
        raise InputError(argument, spec, f"unknown built-in style; choose from {', '.join(builtin_styles())}")
    d = decode(spec, argument, max_side)
    return d.image, d.size
