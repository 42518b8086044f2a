"""Stylize a selection: crop around it, run any stylizer on the crop, composite it back.

The engine is not imported here: it comes in as ``stylize_fn``, a callable taking an RGB crop
(float32 HxWx3, 0..1) and returning a stylized RGB image of any size. That keeps this workflow
testable with a fake stylizer and usable with either engine (optimizer or feed-forward).

Compositing modes:

* ``"poisson"``: Poisson blending (Pérez, Gangnet & Blake 2003, see ``poisson.py``): inside the
  selection the stylized crop's gradients, matched to the original around it, so the stylized
  patch takes on the surrounding brightness and colour at its edge instead of showing a seam.
  A soft selection alpha-blends the solution by its value.
* ``"feather"``: alpha blend with a feathered mask. The feather runs *inward*: the weight rises
  from 0 at the selection's edge to 1 at ``feather`` px inside (smoothstep of the Euclidean
  distance; the image border does not count as an edge), times the selection's own value. So,
  unlike a symmetric blur, nothing outside the selection changes.
* ``"none"``: hard mask, ``selection >= 0.5``.

In every mode the pixels outside the selection (mask == 0) are the original's, bit for bit, the
alpha channel (RGBA) is the original's everywhere, and the composited pixels are clipped to 0..1.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from nst_engine.errors import InputError

from . import poisson
from ._inputs import _mask_float, _mask_values
from .poisson import poisson_blend_report, to_unit_float

__all__ = ["RegionResult", "stylize_region", "crop_box"]

Composite = Literal["poisson", "feather", "none"]
_COMPOSITES = ("poisson", "feather", "none")


@dataclass(frozen=True)
class RegionResult:
    """The result of :func:`stylize_region`."""

    image: np.ndarray  # HxWxC (the input's shape and float dtype), the composite
    layer_mask: np.ndarray  # HxW float32 0..1: the weight each stylized pixel got in the composite
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the crop that was stylized
    note: str  # "" or a remark for the user (e.g. no boundary for a Poisson blend)


def crop_box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the bounding box of ``mask > 0`` plus `margin`, clipped to the image."""
    sel = np.asarray(mask) > 0
    rows, cols = np.flatnonzero(sel.any(axis=1)), np.flatnonzero(sel.any(axis=0))
    if rows.size == 0:
        raise InputError("mask", f"array of shape {sel.shape}", "is empty: select something first")
    h, w = sel.shape
    return (max(0, int(cols[0]) - margin), max(0, int(rows[0]) - margin),
            min(w, int(cols[-1]) + 1 + margin), min(h, int(rows[-1]) + 1 + margin))


def _inward_feather(m: np.ndarray, feather: float, box: tuple[int, int, int, int]) -> np.ndarray:
    """Weights on the crop `box`: m * smoothstep(distance to the nearest unselected pixel / feather)."""
    x0, y0, x1, y1 = box
    H, W = m.shape
    # one extra pixel around the crop (where the image has it) so the selection's edge is seen,
    # and a border of "selected" beyond the image so the image border is not an edge
    ex0, ey0, ex1, ey1 = max(0, x0 - 1), max(0, y0 - 1), min(W, x1 + 1), min(H, y1 + 1)
    inside = np.pad(m[ey0:ey1, ex0:ex1] > 0, 1, constant_values=True)
    dist = ndimage.distance_transform_edt(inside)[1:-1, 1:-1]
    t = np.clip(dist / feather, 0.0, 1.0) if feather > 0 else (dist > 0).astype(np.float64)
    ramp = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    ramp = ramp[y0 - ey0 : y0 - ey0 + (y1 - y0), x0 - ex0 : x0 - ex0 + (x1 - x0)]
    return ramp * m[y0:y1, x0:x1]


def stylize_region(
    image: np.ndarray,
    mask: np.ndarray,
    stylize_fn: Callable[[np.ndarray], np.ndarray],
    *,
    margin: int = 32,
    composite: Composite = "poisson",
    feather: float = 8.0,
) -> RegionResult:
    """Stylize the selected part of `image` and composite it back.

    image: HxWx3 or HxWx4 float (0..1); the result keeps its shape, dtype and alpha.
    mask: HxW selection, float 0..1 (soft allowed), bool, uint8 or uint16.
    stylize_fn: RGB crop (float32 hxwx3, 0..1) -> stylized RGB image of any size (float 0..1,
        uint8 or uint16; an alpha channel is dropped); resized back to the crop (anti-aliased).
    margin: context in px stylized around the selection's bounding box (clipped at the border).
    composite: "poisson", "feather" or "none" (see the module notes).
    feather: width in px of the inward feather ("feather" mode).

    Raises InputError for an empty selection or bad arguments (including a stylize_fn result
    that is not an image).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype.kind != "f":
        raise InputError("image", f"array {img.shape} {img.dtype}", "expected an HxWx3 or HxWx4 float image")
    if not np.isfinite(img).all():
        raise InputError("image", f"array {img.shape} {img.dtype}", "contains NaN or infinity")
    m = _mask_float(_mask_values(mask))
    if m.shape != img.shape[:2]:
        raise InputError("mask", f"array of shape {np.shape(mask)}", f"must match the image's HxW {img.shape[:2]}")
    if composite not in _COMPOSITES:
        raise InputError("composite", composite, f"expected one of {', '.join(_COMPOSITES)}")
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise InputError("margin", margin, "expected an integer >= 0")
    if not np.isfinite(feather) or feather < 0:
        raise InputError("feather", feather, "expected a number >= 0")
    if not callable(stylize_fn):
        raise InputError("stylize_fn", stylize_fn, "expected a callable")

    x0, y0, x1, y1 = crop_box(m, int(margin))
    sel = m > 0
    if composite == "poisson" and not sel.all():
        poisson.prepare(int(np.count_nonzero(sel)))  # a large blend's solver loads while stylize_fn runs
    crop = np.ascontiguousarray(img[y0:y1, x0:x1, :3], dtype=np.float32)
    styl = np.asarray(stylize_fn(crop))
    if styl.ndim != 3 or styl.shape[2] not in (3, 4) or min(styl.shape[:2]) == 0:
        raise InputError("stylize_fn", f"returned array of shape {styl.shape}", "expected an HxWx3 image")
    styl = to_unit_float(styl[:, :, :3], "stylize_fn result")
    if styl.shape[:2] != crop.shape[:2]:
        shrink = styl.shape[0] > crop.shape[0] or styl.shape[1] > crop.shape[1]
        styl = resize(styl, crop.shape, order=1, anti_aliasing=shrink, preserve_range=True).astype(np.float32)

    note = ""
    layer = np.zeros(m.shape, np.float32)
    if composite == "poisson" and sel.all():
        # no boundary to match (Poisson would only fix a constant): paste the stylized image
        layer[:] = m
        note = "selection covers the whole image: no boundary for a Poisson blend, pasted the stylized image"
        blended = m[:, :, None] * styl + (1.0 - m[:, :, None]) * crop
    elif composite == "poisson":
        # the target only needs the crop plus the ring of boundary pixels around the selection
        H, W = m.shape
        ex0, ey0, ex1, ey1 = max(0, x0 - 1), max(0, y0 - 1), min(W, x1 + 1), min(H, y1 + 1)
        target = img[ey0:ey1, ex0:ex1, :3].astype(np.float32)
        report = poisson_blend_report(styl, target, m[y0:y1, x0:x1], mode="seamless", offset=(x0 - ex0, y0 - ey0))
        layer[:] = m
        blended = report.image[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]
        note = report.note
    else:
        if composite == "none":
            layer = (m >= 0.5).astype(np.float32)
        else:
            layer[y0:y1, x0:x1] = _inward_feather(m, float(feather), (x0, y0, x1, y1))
        w = layer[y0:y1, x0:x1, None]
        blended = w * styl + (1.0 - w) * crop

    out = img.copy()
    region = out[y0:y1, x0:x1, :3]
    changed = layer[y0:y1, x0:x1] > 0
    region[changed] = np.clip(blended[changed], 0.0, 1.0).astype(img.dtype)
    return RegionResult(out, layer, (x0, y0, x1, y1), note)
