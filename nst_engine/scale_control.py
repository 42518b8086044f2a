"""Scale control (Gatys et al. 2017, sec. 6): a style per scale, and one style at several sizes.

Coarse to fine (`nst_engine.plan`) optimises the picture at a low resolution first, where the
network's receptive field spans a large part of it, so the style matched there sets the large
structure (the layout of strokes and colour masses); each later scale starts from the previous
result upsampled and settles into a nearby optimum, which mostly changes the finer texture.
`nst_engine.api.stylize` with ``scale_styles`` (one style image per scale of ``config.scales``,
coarse to fine, instead of ``styles``) matches every scale to its own style: the large-scale
structure of style A from the coarse scale(s), the fine texture of style B at the last one.

``config.style_scales`` is the other mix: the same style image(s) analysed at several long sides
relative to the scale's (e.g. 0.5 and 2), their Gram matrices blended (``style_blend``: one weight
per size), so one painting contributes its coarse and its fine structure at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .image import check_array, fit_long_side, to_tensor

if TYPE_CHECKING:
    import torch

    from .config import StyleConfig


def check_scale_styles(value: object, count: int, n_styles: int, cfg: "StyleConfig", regions: bool) -> None:
    """`InputError` naming ``scale_styles`` (shown as ``value``) unless ``count`` per-scale style
    images fit ``cfg``: no other style images, explicit ``scales``, one image per scale."""
    if not count:
        return
    if n_styles:
        raise InputError("scale_styles", value, "the per-scale styles replace the style images: give one or the other")
    if regions:
        raise InputError("scale_styles", value, "not with spatial control (regions): one style per scale applies to "
                                                "the whole picture")
    if not cfg.scales:
        raise InputError("scale_styles", value, "needs explicit scales (--scales), one style image per scale")
    if count != len(cfg.scales):
        raise InputError("scale_styles", value, f"needs one style image per scale: {len(cfg.scales)} scales "
                                                f"({','.join(map(str, cfg.scales))}), {count} style(s)")
    if cfg.style_blend and not cfg.style_scales:
        raise InputError("style_blend", cfg.style_blend, "one style image per scale leaves nothing to blend "
                                                         "(with style_scales it weights the sizes)")


def style_images(styles: Sequence[np.ndarray] | np.ndarray, scale_styles: Sequence[np.ndarray],
                 cfg: "StyleConfig", regions: bool) -> list[np.ndarray]:
    """The checked style images of `stylize`: ``styles``, or ``scale_styles`` (one per scale)."""
    style_list = [styles] if isinstance(styles, np.ndarray) else list(styles)
    per_scale = list(scale_styles)
    check_scale_styles(f"{len(per_scale)} image(s)", len(per_scale), len(style_list), cfg, regions)
    if per_scale:
        return [check_array(s, f"scale_styles[{i}]") for i, s in enumerate(per_scale)]
    if not style_list and not regions:
        raise InputError("styles", style_list, "at least one style image is needed")
    if cfg.style_scales and regions:
        raise InputError("style_scales", cfg.style_scales, "not with spatial control (regions)")
    if cfg.style_blend and not cfg.style_scales and len(cfg.style_blend) != len(style_list):
        raise InputError("style_blend", cfg.style_blend, f"needs one weight per style image ({len(style_list)})")
    return [check_array(s, f"styles[{i}]") for i, s in enumerate(style_list)]


def at_scale(style_in: list[np.ndarray], i: int, per_scale: bool) -> list[np.ndarray]:
    """The style images scale ``i`` matches: its own (``per_scale``), else all of them."""
    return style_in[i:i + 1] if per_scale else style_in


def padding_config(cfg: "StyleConfig", layers: Sequence[str]) -> "StyleConfig":
    """``cfg`` as `nst_engine.thin.pad_inputs` should see it: with ``style_scales`` the smallest
    size decides whether a style image must be mirrored out (too small: `InputError`)."""
    if not cfg.style_scales:
        return cfg
    from .plan import schedule
    from .thin import check_long_side, min_side

    coarsest = schedule(cfg.size, cfg.steps, cfg.scales, cfg.scale_steps)[0][0]
    smallest = min(cfg.style_scales)
    check_long_side(max(1, round(coarsest * smallest)), min_side(layers), "style_scales", cfg.style_scales,
                    "style image")
    return cfg.replace(style_scale=smallest, style_scales=())


def style_targets(style_in: list[np.ndarray], long_side: int, cfg: "StyleConfig", device: "torch.device"
                  ) -> tuple[list["torch.Tensor"], tuple[float, ...], int]:
    """The style tensors of a scale of long side ``long_side`` (each image at each size of
    ``style_scales``, image by image; else at ``style_scale``), their blend weights, and the
    first size."""
    factors = cfg.style_scales or (cfg.style_scale,)
    sizes = [max(1, round(long_side * f)) for f in factors]
    tensors = [to_tensor(s, fit_long_side(s.shape[0], s.shape[1], n), device) for s in style_in for n in sizes]
    if not cfg.style_scales:
        return tensors, cfg.style_blend, sizes[0]
    per_size = cfg.style_blend or (1.0,) * len(sizes)
    return tensors, tuple(w for _ in style_in for w in per_size), sizes[0]
