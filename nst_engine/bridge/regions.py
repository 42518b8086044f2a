"""Regions in the GIMP plug-in's stylize job: a style per saved channel, inside the selection.

The request carries, for each region k (1..`MAX_REGIONS`) it uses: ``regionK`` (h, w: the
channel over the content, 0..1), the style as ``regionK_style`` (h, w, 3|4) or
``regionK_style_file`` (a path; `nst_engine.bridge.jobs.prepare_style` reads it before the job
takes the engine) and ``regionK_channel`` (the channel's name, for messages). ``regions_rest`` is
``photo`` (the part no region covers keeps the photo) or ``style`` (it takes ``style`` /
``style_file``, as `nst_engine.api.stylize`'s STYLE images do). Errors name the plug-in's
arguments (``region2-channel``, ``region2-style-layer``, ``regions-rest``).

`stylize_regions` runs `nst_engine.selection.stylize_selection` with `Region`s: the crop is the
selection's bounding box plus its margin (the whole content without a selection), the region
masks are cropped alike, `nst_engine.api.stylize` runs with them (Gatys et al. 2017 guided Gram
matrices, `nst_engine.regions`) and the result is composited back, so outside the selection
nothing changes. With the rest kept as the photo the new layer's mask is
the selection times the regions' union (clipped to 1): what GIMP shows outside every region is the
original, bit for bit, and soft channel edges blend.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import StyleConfig
from ..errors import InputError

MAX_REGIONS = 4  # as `nst_engine.bridge.arguments.MAX_REGIONS` (no import: that module reads StyleConfig)
MAX_WEIGHT = 100.0  # as `nst_engine.bridge.arguments.MAX_REGION_WEIGHT`
RESTS = ("photo", "style")
# The arrays regions add to a stylize request: name -> number of dimensions.
ARRAYS: dict[str, int] = {**{f"region{k}": 2 for k in range(1, MAX_REGIONS + 1)},
                          **{f"region{k}_style": 3 for k in range(1, MAX_REGIONS + 1)}}

__all__ = ["ARRAYS", "MAX_REGIONS", "RegionInput", "check_shapes", "region_inputs", "rest_choice", "stylize_regions",
           "style_files"]


@dataclass(frozen=True)
class RegionInput:
    """One region of a request, checked: its number, channel name, mask over the content, style."""

    index: int
    name: str
    mask: np.ndarray  # h, w float32 0..1, the content's size
    style: np.ndarray  # h, w, 3 float32 0..1
    weight: float = 1.0  # times the style weight in the region (`nst_engine.regions.Region.weight`)

    @property
    def argument(self) -> str:
        return f"region{self.index}-channel"


def _label(k: int, params: dict[str, Any]) -> str:
    name = params.get(f"region{k}_channel")
    return name if isinstance(name, str) and name else f"region {k}"


def rest_choice(params: dict[str, Any]) -> str:
    """``regions_rest`` checked: ``photo`` (default) or ``style``."""
    rest = params.get("regions_rest")
    rest = "photo" if rest is None else rest
    if rest not in RESTS:
        raise InputError("regions-rest", rest, f"must be one of {', '.join(RESTS)}")
    return str(rest)


def check_shapes(shapes: dict[str, list[int]]) -> None:
    """Before the pixels are read: each region mask matches the content; a region style comes with a mask."""
    content = shapes.get("content", [])[:2]
    for k in range(1, MAX_REGIONS + 1):
        mask = shapes.get(f"region{k}")
        if mask is not None and mask != content:
            raise InputError(f"region{k}-channel", mask, f"the channel's pixels must cover the image {content}")
        if mask is None and f"region{k}_style" in shapes:
            raise InputError(f"region{k}-channel", None, f"region {k} has a style but no channel")


def style_files(params: dict[str, Any], arrays: dict[str, Any]) -> list[tuple[int, str]]:
    """(k, path) of each region whose style is a file still to read (its mask was sent, no style array)."""
    out = []
    for k in range(1, MAX_REGIONS + 1):
        path = params.get(f"region{k}_style_file")
        if f"region{k}" in arrays and f"region{k}_style" not in arrays and path:
            if not isinstance(path, str):
                raise InputError(f"region{k}-style-file", path, "must be a file name")
            out.append((k, path))
    return out


def region_inputs(params: dict[str, Any], masks: dict[str, np.ndarray], styles: dict[str, np.ndarray],
                  selection: np.ndarray | None) -> list[RegionInput]:
    """The request's regions, in order: ``masks`` (``regionK`` arrays, the content's size) and
    ``styles`` (``regionK_style``). InputError naming the plug-in's argument for a region without
    a style, a channel that selects nothing (in the layer, or inside the ``selection``)."""
    from ..regions import EMPTY

    out = []
    for k in range(1, MAX_REGIONS + 1):
        mask = masks.get(f"region{k}")
        if mask is None:
            continue
        label = _label(k, params)
        style = styles.get(f"region{k}_style")
        if style is None:
            raise InputError(f"region{k}-style-layer", label, f"region {k} has no style: choose a Region {k} style "
                                                              "layer or style file")
        m = np.clip(mask, 0.0, 1.0).astype(np.float32, copy=False)
        if float(m.max()) < EMPTY:
            raise InputError(f"region{k}-channel", label, "the channel is black over the whole layer: it selects "
                                                          "no pixel to paint")
        if selection is not None and float(m[selection > 0].max(initial=0.0)) < EMPTY:
            raise InputError(f"region{k}-channel", label, "the channel selects no pixel inside the selection")
        weight = params.get(f"region{k}_weight")
        weight = 1.0 if weight is None else weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= MAX_WEIGHT:
            raise InputError(f"region{k}-weight", weight, f"must be a number between 0 and {MAX_WEIGHT:g}")
        out.append(RegionInput(k, label, m, np.ascontiguousarray(style[..., :3], dtype=np.float32), float(weight)))
    return out


def _whole(mask: np.ndarray | None) -> bool:
    return mask is None or bool((mask >= 1.0).all())


def stylize_regions(
    content: np.ndarray,
    mask: np.ndarray | None,
    rest_styles: Sequence[np.ndarray],
    regions: Sequence[RegionInput],
    config: StyleConfig,
    options: Any,  # StylizeOptions (composite, margin, feather)
    reference_long: int,
    callback: Callable[[Any], None] | None,
    stop: threading.Event,
) -> tuple[np.ndarray, np.ndarray, str, dict[str, Any]]:
    """(layer h×w×3, layer mask h×w, note, info) of `content` (h×w×3|4 0..1) stylized with
    ``regions`` (``rest_styles`` for the part none covers: empty = keep the photo) inside the
    selection ``mask`` (None: the whole content). See the module notes."""
    from ..regions import Region
    from ..selection import stylize_selection

    cut = [Region(r.mask, r.style, r.weight, argument=r.argument, source=r.name) for r in regions]
    try:
        res = stylize_selection(content, None if _whole(mask) else mask, list(rest_styles), config, options,
                                reference_long=reference_long, regions=cut, callback=callback, stop=stop)
    except InputError as e:
        if e.argument == "styles":  # the regions leave no pixel for the rest's style
            raise InputError("regions-rest", "style", "the regions cover the whole selection, so the rest of "
                                                      "the image gets no pixel: keep the photo there") from None
        raise
    info = {**res.info, "regions": len(cut)}
    rgb = np.ascontiguousarray(content[..., :3], dtype=np.float32)
    layer, layer_mask, note = res.layer, res.layer_mask, res.note
    if mask is not None and _whole(mask):  # the layer's mask is the (full) selection itself
        layer_mask = np.asarray(mask, np.float32).copy()
    if not rest_styles:  # the rest keeps the photo: the layer shows only inside the regions
        union = np.clip(np.sum([r.mask for r in regions], axis=0), 0.0, 1.0)
        layer_mask = (layer_mask * union).astype(np.float32)
        layer = np.where(layer_mask[..., None] > 0, layer, rgb)
    return np.ascontiguousarray(layer, dtype=np.float32), np.ascontiguousarray(layer_mask), note, info
