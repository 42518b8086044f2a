"""Checked inputs of a Poisson blend and the dtype conversions around it (uint8, uint16 and float
images in 0..1; masks in bool, uint8, uint16 or float): errors name the argument and value."""
from __future__ import annotations

from typing import Any

import numpy as np

from nst_engine.arrays import _INT_MAX
from nst_engine.errors import InputError


def _planes(image: np.ndarray, channels: int, work: type, name: str) -> np.ndarray:
    """The first `channels` channels of an HxWxC image (uint8, uint16 or float: `_setup` checked
    it) as (channels, H, W) in 0..1, dtype `work`."""
    out = np.empty((channels, *image.shape[:2]), dtype=work)
    for k in range(channels):
        plane = image[:, :, k]
        if image.dtype in _INT_MAX:
            np.multiply(plane, work(1.0 / _INT_MAX[image.dtype]), out=out[k])
        else:
            out[k] = plane
    if image.dtype.kind == "f" and not np.isfinite(out).all():
        raise InputError(name, f"array {image.shape} {image.dtype}", "contains NaN or infinity")
    return out


def _from_unit_float(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype in _INT_MAX:
        return np.clip(np.rint(a * _INT_MAX[dtype]), 0, _INT_MAX[dtype]).astype(dtype)
    return a.astype(dtype)


def _colour_channels(image: np.ndarray, name: str) -> int:
    """Number of colour channels: 1 (grey), 3 (RGB); a 2nd or 4th channel is alpha."""
    if image.ndim == 2:
        return 1
    if image.ndim == 3 and image.shape[2] in (1, 2, 3, 4):
        return 1 if image.shape[2] <= 2 else 3
    raise InputError(name, f"array of shape {image.shape}", "expected HxW, HxWx1..4 (grey, grey+alpha, RGB, RGBA)")


def _mask_values(mask: np.ndarray) -> np.ndarray:
    """The mask as a checked 2-D array in its own dtype (bool, uint8, uint16 or float 0..1):
    converted to float (`_mask_float`) only on the solve rectangle."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise InputError("mask", f"array of shape {m.shape}", "expected a 2-D (HxW) mask")
    if m.dtype == np.bool_ or m.dtype in _INT_MAX:
        return m
    if m.dtype.kind != "f":
        raise InputError("mask", f"array {m.shape} {m.dtype}", "dtype must be bool, uint8, uint16 or float")
    if not np.isfinite(m).all() or m.min(initial=0.0) < 0.0 or m.max(initial=0.0) > 1.0:
        raise InputError("mask", f"array {m.shape} {m.dtype}", "float mask values must be finite and within 0..1")
    return m


def _mask_float(m: np.ndarray) -> np.ndarray:
    """Mask values (from `_mask_values`) as float32 0..1."""
    if m.dtype in _INT_MAX:
        return m.astype(np.float32) / np.float32(_INT_MAX[m.dtype])
    return m.astype(np.float32)


def _check_offset(offset: Any) -> tuple[int, int]:  # Any: whatever the caller passed, checked here
    try:
        ox, oy = offset
        if int(ox) != ox or int(oy) != oy:
            raise ValueError
        return int(ox), int(oy)
    except (TypeError, ValueError):
        raise InputError("offset", offset, "expected two integers (x, y)") from None


def _unit(a: np.ndarray, work: type) -> np.ndarray:
    """Pixels (any shape) as `work` floats in 0..1."""
    return a.astype(work) * work(1.0 / _INT_MAX[a.dtype]) if a.dtype in _INT_MAX else a.astype(work)
