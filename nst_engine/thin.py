"""Images too thin for VGG-19: padded for the run, cropped back afterwards.

Each pooling layer halves the image, so the network up to a layer of block ``k`` needs at least
``2**(k-1)`` px on each side (16 px for ``relu5_1``); a thinner input fails deep inside torch
("Output size is too small"). A strip of 3x128 px, ``nst texture --height 8`` or a thin layer in
GIMP would hit that. Here such an image is mirrored out (symmetric padding) across its short side
to the minimum at the coarsest scale, the run sees the padded image, and the result is cropped
back to exactly the size the unpadded image would have had. Only a long side below the minimum
is refused, with an error naming the setting and the size it needs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .encoders.layers import LAYER_NAMES, resolve_layer
from .errors import InputError
from .image import fit_long_side

if TYPE_CHECKING:
    from .config import StyleConfig


def min_side(layers: Sequence[str]) -> int:
    """The smallest image side (px) the network up to the deepest of ``layers`` accepts."""
    deepest = max((resolve_layer(name) for name in layers), key=LAYER_NAMES.index)
    pools = sum(1 for name in LAYER_NAMES[: LAYER_NAMES.index(deepest) + 1] if name.startswith("pool"))
    return 1 << pools


def check_long_side(long_side: int, need: int, argument: str, value: object, what: str = "image") -> None:
    if long_side < need:
        raise InputError(argument, value, f"the {what} would be processed with a long side of {long_side} px; "
                                          f"VGG-19 needs at least {need} px a side for these layers")


@dataclass(frozen=True)
class Pad:
    axis: int  # 0: rows were added, 1: columns
    before: int  # px added before the image along ``axis``
    original: tuple[int, int]  # (h, w) before padding
    padded: tuple[int, int]  # (h, w) after


def pad_for(image: np.ndarray, long_side: int, need: int) -> tuple[np.ndarray, Pad | None]:
    """``image`` mirrored out across its short side so that, shrunk or grown to ``long_side``,
    its short side is at least ``need`` px (None: it already is). ``long_side >= need``."""
    h, w = image.shape[:2]
    if min(fit_long_side(h, w, long_side)) >= need:
        return image, None
    axis = 0 if h <= w else 1
    long, short = max(h, w), image.shape[axis]
    target = min(long, math.ceil(need * long / long_side))
    before = (target - short) // 2
    widths = [(0, 0)] * image.ndim
    widths[axis] = (before, target - short - before)
    padded = np.pad(image, widths, mode="symmetric")
    return padded, Pad(axis, before, (h, w), (int(padded.shape[0]), int(padded.shape[1])))


def crop(result: np.ndarray, pad: Pad | None) -> np.ndarray:
    """The part of a padded run's ``result`` that is the unpadded image, at the size the unpadded
    image would have been processed at."""
    if pad is None:
        return result
    th, tw = fit_long_side(*pad.original, max(result.shape[:2]))
    length = (th, tw)[pad.axis]
    start = round(pad.before * result.shape[pad.axis] / pad.padded[pad.axis])
    start = max(0, min(start, result.shape[pad.axis] - length))
    if pad.axis == 0:
        return np.ascontiguousarray(result[start:start + th, :tw])
    return np.ascontiguousarray(result[:th, start:start + tw])


def pad_inputs(content: np.ndarray, styles: list[np.ndarray], cfg: "StyleConfig", layers: Sequence[str]
               ) -> tuple[np.ndarray, list[np.ndarray], Pad | None]:
    """`stylize`'s content and styles, mirrored out where the coarsest scale of ``cfg``'s schedule
    would make them too thin; the `Pad` crops the result back (None: nothing was padded)."""
    from .plan import schedule

    need = min_side(layers)
    coarsest = schedule(cfg.size, cfg.steps, cfg.scales, cfg.scale_steps)[0][0]
    check_long_side(coarsest, need, "scales" if cfg.scales else "size", cfg.scales or cfg.size)
    style_long = max(1, round(coarsest * cfg.style_scale))
    check_long_side(style_long, need, "style_scale", cfg.style_scale, "style image")
    content, pad = pad_for(content, coarsest, need)
    return content, [pad_for(s, style_long, need)[0] for s in styles], pad


def work_shape(shape: tuple[int, int], need: int) -> tuple[int, int]:
    """A texture's shape with each side at least ``need`` (the result is cropped to ``shape``)."""
    return max(shape[0], need), max(shape[1], need)
