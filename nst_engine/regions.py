"""Spatial control: a style per region of the photo (Gatys, Ecker, Bethge, Hertzmann, Shechtman
2017, "Controlling Perceptual Factors in Neural Style Transfer", sec. 4).

Each region k has a guidance channel Tᵏ over the content (a soft mask, 0..1) and, optionally,
one over its style image (default: the whole style image). At a layer with features F the
region's Gram is the guided Gram of the paper,

    Gᵏ = (F∘Tᵏ)(F∘Tᵏ)ᵀ / Σ(Tᵏ)²,

with Tᵏ propagated to the layer's resolution, and its style loss the usual Gram loss between Gᵏ
and the style's guided Gram Aᵏ (`GuidedGramLoss`). Dividing by the guidance's mass Σ(Tᵏ)² (not by
the map's size) makes the Gram an average over the region, so a small region is held to its style
as firmly as a large one; with Tᵏ all ones it is the plain `ops.gram`. A part of the photo no
region covers has only the content loss: it stays the photo.

Propagation: the paper's simple way. The guidance is downsampled to each layer's map by average
pooling over the layer's stride (2×2 cells per VGG pooling, 2ᵇ×2ᵇ at block b+1), the same cells
VGG's own pooling merges, so a feature position's guidance is the fraction of its pooling cell
inside the region and the map's shape is exactly the features' (floor division, as the pools).
The paper's alternative ("inside": keep only positions whose whole receptive field is inside the
region) would erode small regions away at the deep layers; soft masks blur the seam instead.

Masks may have any size with the content's aspect ratio (±2 %); they are resized to the image at
every scale of a coarse-to-fine run. Where regions overlap so that their masks add up to more than
1 they are divided by the sum there, so the guidance sums to ≤ 1 at every pixel.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

from .encoders.base import Encoder
from .errors import InputError
from .losses import STYLE_SCALE, FeatureLoss
from .ops import gram

if TYPE_CHECKING:
    from .config import StyleConfig
    from .thin import Pad

__all__ = ["ASPECT_TOLERANCE", "GuidedGramLoss", "Region", "RegionSet", "guided_gram", "guided_style_terms",
           "layer_guidance", "mask_from_image", "prepare", "region_masks", "resize_mask", "rest_mask"]

ASPECT_TOLERANCE = 0.02  # a mask's width/height may differ from its image's by this fraction
EMPTY = 1e-3  # a mask whose largest value is below this selects nothing
FULL = 1.0 - 1e-3  # a mask whose smallest value is above this selects everything


@dataclass(frozen=True)
class Region:
    """One region of `api.stylize(..., regions=[...])`: where (``mask`` over the content) and in
    which style (``style``, optionally only its part under ``style_mask``), and how strongly.

    ``mask``/``style_mask``: HxW (or HxWx1) arrays in 0..1 (uint8/uint16 are scaled), any size with
    the aspect ratio of the content / style image. ``weight`` multiplies the style weight in the
    region (0: the region keeps the photo). ``argument``/``source`` name the region in errors
    (default ``regions[k]`` and the mask's size; the CLI passes ``--region`` and what was typed).
    """

    mask: np.ndarray
    style: np.ndarray
    weight: float = 1.0
    style_mask: np.ndarray | None = None
    argument: str = ""
    source: str = ""


def mask_from_image(image: np.ndarray) -> np.ndarray:
    """A mask from a decoded image (float32 HxW[xC] 0..1): its alpha channel where it has one that
    is not fully opaque, else its gray level (the mean of R, G, B)."""
    if image.ndim == 2:
        return image.astype(np.float32)
    if image.shape[2] in (2, 4) and float(image[..., -1].min()) < 1.0:
        return np.ascontiguousarray(image[..., -1], dtype=np.float32)
    return image[..., : min(3, image.shape[2])].mean(axis=2).astype(np.float32)


def _as_mask(a: object, argument: str, value: str) -> np.ndarray:
    """An API mask as float32 HxW 0..1, or InputError."""
    if not isinstance(a, np.ndarray):
        raise InputError(argument, value or type(a).__name__, "mask must be a numpy array")
    m = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    if m.ndim != 2 or min(m.shape) < 1:
        raise InputError(argument, value or str(a.shape), "mask must be HxW or HxWx1 with pixels")
    if m.dtype == np.uint8 or m.dtype == np.uint16:
        m = m.astype(np.float32) / float(np.iinfo(m.dtype).max)
    elif m.dtype == np.bool_:
        m = m.astype(np.float32)
    m = np.asarray(m, dtype=np.float32)
    if not np.isfinite(m).all():
        raise InputError(argument, value or str(a.shape), "mask has NaN or infinite values")
    return np.clip(m, 0.0, 1.0)


def _check_aspect(mask: np.ndarray, shape: tuple[int, int], argument: str, value: str, what: str) -> None:
    mh, mw = mask.shape[:2]
    h, w = shape
    ratio = (mw / mh) / (w / h)
    if abs(ratio - 1.0) > ASPECT_TOLERANCE:
        raise InputError(argument, value, f"{what} is {mw}x{mh} (aspect {mw / mh:.3f}), its image {w}x{h} "
                                          f"(aspect {w / h:.3f}): the aspect ratios must agree within "
                                          f"{ASPECT_TOLERANCE:.0%}")


def resize_mask(mask: np.ndarray | torch.Tensor, shape: tuple[int, int], device: torch.device | None = None
                ) -> torch.Tensor:
    """``mask`` (HxW array or (1,1,H,W) tensor) as a (1,1,h,w) fp32 tensor of ``shape``:
    area-averaged when shrinking, bilinear when growing (a soft edge stays soft)."""
    t = torch.as_tensor(mask, dtype=torch.float32)
    if t.ndim == 2:
        t = t[None, None]
    if tuple(t.shape[-2:]) != tuple(shape):
        shrink = t.shape[-2] >= shape[0] and t.shape[-1] >= shape[1]
        t = F.interpolate(t, size=shape, mode="area") if shrink else \
            F.interpolate(t, size=shape, mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    return t.to(device) if device is not None else t


def region_masks(regions: Sequence[Region], content_shape: tuple[int, int], rest_has_style: bool
                 ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """The content guidance of each region at ``content_shape`` (overlaps divided by their sum
    where it exceeds 1) and each style guidance (checked, at its style image's size; None: the
    whole style). InputError for: a mask that is not an image-like array, an empty mask, a mask
    covering everything while another region (or ``rest_has_style``: the rest's STYLE) exists, an
    aspect ratio off by more than 2 %, a weight below 0."""
    masks: list[np.ndarray] = []
    style_masks: list[np.ndarray | None] = []
    others = len(regions) - 1 + int(rest_has_style)
    for k, r in enumerate(regions):
        arg = r.argument or f"regions[{k}]"
        if not isinstance(r.weight, (int, float)) or isinstance(r.weight, bool) or not np.isfinite(r.weight) \
                or r.weight < 0:
            raise InputError(arg, r.source or r.weight, "the region's style weight must be a number >= 0")
        m = _as_mask(r.mask, arg, r.source)
        value = r.source or f"mask {m.shape[1]}x{m.shape[0]}"
        _check_aspect(m, content_shape, arg, value, "the mask")
        at = resize_mask(m, content_shape)[0, 0].numpy()
        if float(at.max()) < EMPTY:
            raise InputError(arg, value, "the mask is empty (black everywhere): it selects no pixel")
        if others and float(at.min()) > FULL:
            raise InputError(arg, value, "the mask covers the whole image (white everywhere), so no other region "
                                         "gets a pixel; paint only the part this style is for")
        masks.append(at)
        if r.style_mask is None:
            style_masks.append(None)
            continue
        sm = _as_mask(r.style_mask, arg, r.source)
        svalue = r.source or f"style mask {sm.shape[1]}x{sm.shape[0]}"
        _check_aspect(sm, r.style.shape[:2], arg, svalue, "the style mask")
        if float(sm.max()) < EMPTY:
            raise InputError(arg, svalue, "the style mask is empty: it selects no pixel of the style image")
        style_masks.append(sm)
    total = np.sum(masks, axis=0) if masks else None
    if total is not None and float(total.max()) > 1.0:
        scale = np.maximum(total, 1.0)
        masks = [(m / scale).astype(np.float32) for m in masks]
    return masks, style_masks


def rest_mask(masks: Sequence[np.ndarray]) -> np.ndarray:
    """The part of the image no region covers: 1 − Σ masks (≥ 0)."""
    return np.clip(1.0 - np.sum(masks, axis=0), 0.0, 1.0).astype(np.float32)


def layer_guidance(guidance: torch.Tensor, stride: int, shape: tuple[int, int]) -> torch.Tensor:
    """A (1,1,H,W) guidance at a layer of ``stride`` px whose map is ``shape``: the mean over each
    stride×stride cell (VGG's pooling cells; see the module notes)."""
    g = F.avg_pool2d(guidance, stride) if stride > 1 else guidance
    if tuple(g.shape[-2:]) != tuple(shape):  # an encoder whose maps are not floor(H/stride)
        g = F.interpolate(guidance, size=shape, mode="area")
    return g


def _support(g: torch.Tensor) -> tuple[slice, slice]:
    """The bounding box of the nonzero guidance: positions outside it add nothing to the Gram."""
    rows = torch.nonzero(g[0, 0].amax(dim=1) > 0).flatten()
    cols = torch.nonzero(g[0, 0].amax(dim=0) > 0).flatten()
    if rows.numel() == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


class _GuidedGram(torch.autograd.Function):
    """(F∘t)(F∘t)ᵀ over a box of the map, with t = T/√ΣT² (the mass folded into the guidance).

    One multiply and one matmul each way, like `ops._Gram` with no division pass over the C×N
    gradient; outside the box the gradient is zero (no slice backward when the box is the map).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: torch.Tensor, t: torch.Tensor,  # type: ignore[override]
                rows: slice, cols: slice) -> torch.Tensor:
        c = f.shape[1]
        ft = (f[..., rows, cols].float() * t).reshape(c, -1)
        ctx.save_for_backward(ft, t)
        ctx.meta = (f.shape, f.dtype, rows, cols)  # type: ignore[attr-defined]
        return torch.mm(ft, ft.t())

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor  # type: ignore[override]
                 ) -> tuple[torch.Tensor, None, None, None]:
        ft, t = ctx.saved_tensors  # type: ignore[attr-defined]
        shape, dtype, rows, cols = ctx.meta  # type: ignore[attr-defined]
        d = torch.mm(grad + grad.t(), ft).reshape(1, shape[1], *t.shape[-2:]).mul_(t)
        if tuple(d.shape) == tuple(shape):
            return d.to(dtype), None, None, None
        out = d.new_zeros(shape, dtype=dtype)
        out[..., rows, cols] = d
        return out, None, None, None


def guided_gram(features: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """(F∘T)(F∘T)ᵀ / Σ T² of (1,C,h,w) features and a (1,1,h,w) guidance at the same layer, in fp32."""
    t = guidance.float()
    mass = float(t.square().sum())
    if mass <= 0:
        c = features.shape[1]
        return features.new_zeros((c, c), dtype=torch.float32)
    result: torch.Tensor = _GuidedGram.apply(features, t / mass**0.5, slice(None), slice(None))
    return result


class GuidedGramLoss(FeatureLoss):
    """One region's style at one layer: weight·10/C²·mse(Gᵏ(x), Aᵏ) with the guided Gram Gᵏ.

    Holds the content guidance at the layer's resolution divided by √(its mass), cropped to its
    support (the bounding box of its nonzero values) so a region costs a Gram of its own area.
    """

    target: torch.Tensor  # C×C guided Gram of the style (a buffer)
    guidance: torch.Tensor  # (1,1,h',w') T/√ΣT² on its support

    def __init__(self, layer: str, target_gram: torch.Tensor, guidance: torch.Tensor, weight: float = 1.0) -> None:
        super().__init__()
        self.layer = layer
        self.weight = weight * STYLE_SCALE / target_gram.shape[0] ** 2
        self.map_shape = (int(guidance.shape[-2]), int(guidance.shape[-1]))
        self.rows, self.cols = _support(guidance)
        g = guidance[..., self.rows, self.cols].detach().float()
        self.mass = float(g.square().sum())
        self.register_buffer("target", target_gram.detach().float(), persistent=False)
        self.register_buffer("guidance", (g / self.mass**0.5).contiguous(), persistent=False)
        self._full: torch.Tensor | None = None  # the guidance over the whole map, for tiles

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        f = feats[self.layer]
        if tuple(f.shape[-2:]) != self.map_shape:
            raise RuntimeError(f"{self.layer}: features {tuple(f.shape[-2:])}, guidance made for {self.map_shape}")
        g: torch.Tensor = _GuidedGram.apply(f, self.guidance, self.rows, self.cols)
        return self.loss_from_gram(g)

    def loss_from_gram(self, g: torch.Tensor) -> torch.Tensor:
        """The loss of a guided Gram (whole or summed over tiles, `tile_gram`)."""
        return self.weight * F.mse_loss(g, self.target)

    def tile_gram(self, f: torch.Tensor, whole: tuple[slice, slice]) -> torch.Tensor:
        """The guided Gram's share of one tile's core, ``f`` (1,C,h,w), at ``whole`` in the map:
        a sum over positions, so the shares of the tiles add up to the whole Gram (`tiling`)."""
        if self._full is None or self._full.device != self.guidance.device:
            full = self.guidance.new_zeros((1, 1, *self.map_shape))
            full[..., self.rows, self.cols] = self.guidance
            self._full = full
        ft = (f.float() * self._full[..., whole[0], whole[1]]).reshape(f.shape[1], -1)
        return torch.mm(ft, ft.t())


@torch.no_grad()
def guided_style_terms(
    encoder: Encoder,
    content_guidance: torch.Tensor,
    content_shape: tuple[int, int],
    styles: Sequence[torch.Tensor],
    style_guidances: Sequence[torch.Tensor | None],
    blend: Sequence[float],
    layers: Sequence[str],
    weights: Sequence[float],
    scale: float,
) -> list[FeatureLoss]:
    """The `GuidedGramLoss` terms of one region: its (1,1,H,W) ``content_guidance`` over an image of
    ``content_shape``; the target the blend (``blend``, normalised; default equal) of the guided
    Grams of ``styles`` (1,3,h,w) under ``style_guidances`` ((1,1,h,w) each, None: all ones)."""
    names = [encoder.resolve_layer(n) for n in layers]
    lw = list(weights) if weights else [1.0] * len(names)
    b = list(blend) if blend else [1.0] * len(styles)
    total = sum(b)
    targets: dict[str, torch.Tensor] = {}
    for img, sg, bi in zip(styles, style_guidances, b, strict=True):
        feats = encoder(img, names)
        for n in names:
            f = feats[n]
            fshape = (int(f.shape[-2]), int(f.shape[-1]))
            g = guided_gram(f, layer_guidance(sg, encoder.geometry(n).stride, fshape)) if sg is not None \
                else gram(f)
            g = g * (bi / total)
            targets[n] = targets[n] + g if n in targets else g
    terms: list[FeatureLoss] = []
    for n, w in zip(names, lw, strict=True):
        stride = encoder.geometry(n).stride
        fshape = _map_shape(encoder, n, content_shape)
        guidance = layer_guidance(content_guidance, stride, fshape)
        if w > 0 and float(guidance.sum()) > 0:
            terms.append(GuidedGramLoss(n, targets[n], guidance, scale * w))
    return terms


def _map_shape(encoder: Encoder, layer: str, shape: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) of ``layer``'s map for an image of ``shape``: floor division by its stride, as
    VGG's 2×2 pools (and the tiny test encoder's) give."""
    stride = encoder.geometry(layer).stride
    return shape[0] // stride, shape[1] // stride


def _pad_like(a: np.ndarray, pad: "Pad | None") -> np.ndarray:
    """``a`` (at the unpadded image's size) mirrored out as `thin.pad_for` mirrored its image."""
    if pad is None:
        return a
    widths = [(0, 0)] * a.ndim
    widths[pad.axis] = (pad.before, pad.padded[pad.axis] - pad.original[pad.axis] - pad.before)
    return np.pad(a, widths, mode="symmetric")


@dataclass
class RegionSet:
    """`api.stylize`'s regions, checked and ready: guidances at the (padded) content's size, the
    styles as the optimiser sees them (colour-processed, padded), their guidances (None: whole)."""

    masks: list[np.ndarray]
    styles: list[np.ndarray]
    style_masks: list[np.ndarray | None]
    weights: list[float]
    rest: np.ndarray | None  # where the positional STYLE images apply (None: there are none)

    def terms(self, encoder: Encoder, shape: tuple[int, int], style_side: int, rest_styles: Sequence[torch.Tensor],
              config: "StyleConfig", device: torch.device) -> tuple[list[FeatureLoss], torch.Tensor]:
        """The guided style terms at one scale (content ``shape``, styles at long side
        ``style_side``), and the first region's style image there (a start image for init=style)."""
        from .image import fit_long_side, to_tensor

        terms: list[FeatureLoss] = []
        first: torch.Tensor | None = None
        cfg = config
        for mask, style, smask, w in zip(self.masks, self.styles, self.style_masks, self.weights, strict=True):
            st = to_tensor(style, fit_long_side(style.shape[0], style.shape[1], style_side), device)
            first = st if first is None else first
            if w <= 0 or cfg.style_weight <= 0:
                continue
            sg = None if smask is None else resize_mask(smask, (st.shape[-2], st.shape[-1]), device)
            terms += guided_style_terms(encoder, resize_mask(mask, shape, device), shape, [st], [sg], (),
                                        cfg.style_layers, cfg.style_layer_weights, cfg.style_weight * w)
        if self.rest is not None and rest_styles and cfg.style_weight > 0:
            terms += guided_style_terms(encoder, resize_mask(self.rest, shape, device), shape, rest_styles,
                                        [None] * len(rest_styles), cfg.style_blend, cfg.style_layers,
                                        cfg.style_layer_weights, cfg.style_weight)
        assert first is not None
        return terms, first


def prepare(regions: Sequence[Region], styles: Sequence[np.ndarray], content_shape: tuple[int, int],
            pad: "Pad | None", rest_has_style: bool, config: "StyleConfig", layers: Sequence[str]) -> RegionSet:
    """Check ``regions`` against the content (``content_shape``, before `thin` padding, ``pad``) and
    ready them; ``styles`` are the regions' style images after the colour step."""
    from . import thin

    masks, style_masks = region_masks(regions, content_shape, rest_has_style)
    rest = rest_mask(masks) if rest_has_style else None
    if rest is not None and float(rest.max()) < EMPTY:
        raise InputError("styles", f"{len(regions)} regions", "the regions cover the whole image, so the STYLE "
                                                               "images (for the part no region covers) get no pixel")
    from .plan import schedule

    need = thin.min_side(layers)
    coarsest = schedule(config.size, config.steps, config.scales, config.scale_steps)[0][0]
    style_side = max(1, round(coarsest * config.style_scale))
    padded_styles: list[np.ndarray] = []
    padded_style_masks: list[np.ndarray | None] = []
    for style, smask in zip(styles, style_masks, strict=True):
        s, spad = thin.pad_for(style, style_side, need)
        padded_styles.append(s)
        padded_style_masks.append(None if smask is None else
                                  _pad_like(resize_mask(smask, style.shape[:2])[0, 0].numpy(), spad))
    return RegionSet([_pad_like(m, pad) for m in masks], padded_styles, padded_style_masks,
                     [float(r.weight) for r in regions], None if rest is None else _pad_like(rest, pad))
