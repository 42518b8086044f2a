"""Image arrays as the engine takes them: float32 in 0..1 (numpy only, no torch)."""
from __future__ import annotations

import numpy as np

from .errors import InputError

_INT_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def to_unit_float(image: np.ndarray, name: str) -> np.ndarray:
    """An image as float32 in 0..1 (uint8 / uint16 scaled, floats as they are), validated."""
    a = np.asarray(image)
    if a.dtype in _INT_MAX:
        return a.astype(np.float32) / np.float32(_INT_MAX[a.dtype])
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError(name, f"array {a.shape} {a.dtype}", "contains NaN or infinity")
        return a.astype(np.float32)
    raise InputError(name, f"array {a.shape} {a.dtype}", "dtype must be uint8, uint16 or float")
