"""Colour handling around style transfer: Gatys, Bethge, Hertzmann & Shechtman (2016),
"Preserving colour in neural artistic style transfer" (arXiv:1606.05897).

The paper gives two ways to keep the content's colours:

1. *Luminance-only transfer* (its section 3): run the transfer on luminance images, after matching
   the style's luminance to the content's (:func:`match_luminance`), then put the content's
   chroma back (:func:`recolor`, which also works as a post-process on any stylized image).
2. *Colour histogram matching* (its section 2): recolour the style image to the content's palette
   before the transfer: :func:`linear_color_transfer` (mean and covariance, the paper's method) or
   :func:`match_histogram_colors` (full per-channel histograms).

All functions take HxWx3 RGB images (float in 0..1; uint8 and uint16 are scaled to 0..1) and
return float32. Luminance / chroma are YIQ (NTSC, the paper's choice) or CIE L*a*b* for
``space="lab"``. Nothing is clipped unless a function says so.
"""
from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from skimage import color as skcolor
from skimage import exposure
from skimage.transform import resize

from nst_engine.errors import InputError
from nst_engine.arrays import to_unit_float

__all__ = [
    "luminance",
    "split_yiq",
    "merge_yiq",
    "match_luminance",
    "recolor",
    "match_histogram_colors",
    "linear_color_transfer",
]

Space = Literal["yiq", "lab"]

# RGB -> YIQ (the matrix scikit-image uses); its inverse is computed once
_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.59590059, -0.27455667, -0.32134392], [0.21153661, -0.52273617, 0.31119955]]
)
_YIQ_INV = np.linalg.inv(_YIQ)


def _rgb(image: np.ndarray, name: str) -> np.ndarray:
    """An HxWx3 image as float32, uint8/uint16 scaled to 0..1, checked."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(name, f"array of shape {a.shape}", "expected an HxWx3 RGB image")
    return to_unit_float(a, name)


def _resize_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an HxWxC image (anti-aliased when shrinking) to `shape`; no-op if it has it already."""
    if image.shape[:2] == tuple(shape):
        return image
    shrink = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    out = resize(image, (*shape, image.shape[2]), order=1, anti_aliasing=shrink, preserve_range=True)
    return out.astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Y of YIQ (0.299 R + 0.587 G + 0.114 B), HxW float32."""
    a = _rgb(rgb, "rgb")
    return (a @ _YIQ[0].astype(np.float32)).astype(np.float32)


def split_yiq(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB -> (Y: HxW, IQ: HxWx2), float32."""
    yiq = (_rgb(rgb, "rgb") @ _YIQ.T.astype(np.float32)).astype(np.float32)
    return yiq[:, :, 0], yiq[:, :, 1:]


def merge_yiq(y: np.ndarray, iq: np.ndarray) -> np.ndarray:
    """(Y: HxW, IQ: HxWx2) -> RGB HxWx3 float32, not clipped (out-of-gamut values stay)."""
    y, iq = np.asarray(y, dtype=np.float32), np.asarray(iq, dtype=np.float32)
    if y.ndim != 2 or iq.shape != (*y.shape, 2):
        raise InputError("iq", f"array of shape {iq.shape}", f"expected HxWx2 matching y {y.shape}")
    yiq = np.concatenate([y[:, :, None], iq], axis=2)
    return (yiq @ _YIQ_INV.T.astype(np.float32)).astype(np.float32)


def match_luminance(style_rgb: np.ndarray, content_rgb: np.ndarray, *, histogram: bool = False) -> np.ndarray:
    """The style's luminance (HxW float32, style size) matched to the content's luminance.

    Default: mean and standard deviation, the paper's eq. (1),
    ``L_S' = sigma_C / sigma_S * (L_S - mu_S) + mu_C`` (not clipped, so the moments match exactly).
    ``histogram=True``: full histogram matching (skimage.exposure.match_histograms) instead.
    A flat style luminance (sigma_S = 0) is just shifted to the content's mean.
    """
    ls, lc = luminance(style_rgb), luminance(content_rgb)
    if histogram:
        return exposure.match_histograms(ls, lc).astype(np.float32)
    mu_s, sd_s = float(ls.mean()), float(ls.std())
    mu_c, sd_c = float(lc.mean()), float(lc.std())
    scale = sd_c / sd_s if sd_s > 1e-12 else 0.0
    return ((ls - mu_s) * scale + mu_c).astype(np.float32)


def recolor(stylized: np.ndarray, content: np.ndarray, *, space: Space = "yiq") -> np.ndarray:
    """Keep the stylized image's luminance, take the content's chroma (Gatys et al. 2016, sec. 3).

    Works as a post-process on any stylized image. `content` is resized (anti-aliased) to the
    stylized image's size if they differ. ``space="yiq"``: output Y = stylized Y, I and Q =
    content's; ``space="lab"``: L* from the stylized image, a* b* from the content (sRGB, D65).
    The result is clipped to 0..1, which changes the few out-of-gamut pixels slightly.
    """
    if space not in ("yiq", "lab"):
        raise InputError("space", space, "expected yiq or lab")
    st = _rgb(stylized, "stylized")
    ct = _resize_to(_rgb(content, "content"), st.shape[:2])
    if space == "yiq":
        y, _ = split_yiq(st)
        _, iq = split_yiq(ct)
        return np.clip(merge_yiq(y, iq), 0.0, 1.0)
    lab_s = skcolor.rgb2lab(st)
    lab_c = skcolor.rgb2lab(ct)
    lab_c[:, :, 0] = lab_s[:, :, 0]
    with warnings.catch_warnings():  # lab2rgb warns when it clips negative Z (out of gamut)
        warnings.simplefilter("ignore", UserWarning)
        rgb = skcolor.lab2rgb(lab_c)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def match_histogram_colors(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The style recoloured so each RGB channel's histogram matches the content's (float32, 0..1)."""
    st, ct = _rgb(style, "style"), _rgb(content, "content")
    return exposure.match_histograms(st, ct, channel_axis=-1).astype(np.float32)


def linear_color_transfer(
    style: np.ndarray,
    content: np.ndarray,
    *,
    method: Literal["eigh", "cholesky"] = "eigh",
    clip: bool = True,
    eps: float = 1e-6,
) -> np.ndarray:
    """The style recoloured to the content's palette by an affine map of its RGB values
    (Gatys et al. 2016, sec. 2): ``x' = A (x - mu_S) + mu_C`` with ``A Sigma_S A^T = Sigma_C``,
    so the result has the content's mean and covariance.

    method: "eigh" (A = Sigma_C^1/2 Sigma_S^-1/2, symmetric square roots, the Image Analogies
        variant) or "cholesky" (A = L_C L_S^-1). Both match the first two moments; they differ by a
        rotation of the colours.
    clip: clip to 0..1 (default; the moments then match only approximately where values clip).
    eps: added to the style covariance's diagonal, relative to its mean variance, so a flat
        (rank-deficient) style stays invertible; the moments then match to about eps.
    """
    if method not in ("eigh", "cholesky"):
        raise InputError("method", method, "expected eigh or cholesky")
    st, ct = _rgb(style, "style"), _rgb(content, "content")
    xs = st.reshape(-1, 3).astype(np.float64)
    xc = ct.reshape(-1, 3).astype(np.float64)
    mu_s, mu_c = xs.mean(axis=0), xc.mean(axis=0)
    cov_s = np.cov(xs, rowvar=False, bias=True)
    cov_s += eps * (np.trace(cov_s) / 3.0 + 1e-12) * np.eye(3)
    cov_c = np.cov(xc, rowvar=False, bias=True)
    cov_c += 1e-12 * np.eye(3)  # only so that Cholesky accepts a flat content image
    if method == "cholesky":
        A = np.linalg.cholesky(cov_c) @ np.linalg.inv(np.linalg.cholesky(cov_s))
    else:
        A = _sqrtm(cov_c) @ np.linalg.inv(_sqrtm(cov_s))
    out = ((xs - mu_s) @ A.T + mu_c).reshape(st.shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0) if clip else out


def _sqrtm(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive definite matrix (via eigh)."""
    vals, vecs = np.linalg.eigh(cov)
    return (vecs * np.sqrt(np.maximum(vals, 0.0))) @ vecs.T
