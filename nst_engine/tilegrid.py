"""Tile covers on an encoder's pooling grid, and exact tiled no-grad passes (Grams, features).

Every tile is padded by a halo at least half the receptive field of the deepest layer, so its
core's features equal those of the whole image, and tile origins sit on the network's pooling
grid, so pooling windows line up. The geometry comes from the encoder (`Encoder.geometry`);
the functions that take a layer *name* instead describe VGG-19.

This module knows no loss: `losses` builds its targets with it, and `tiling` (the tiled
objective) builds on both.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise

import torch

from .encoders.base import Encoder, LayerGeometry, cover_geometry
from .encoders.layers import layer_geometry
from .ops import gram


def receptive_field(last: str) -> int:
    """Receptive field (px) of one activation at VGG-19 layer ``last`` (3×3 convs, 2×2 stride-2 pools)."""
    return layer_geometry(last).receptive_field


def stride(layer: str) -> int:
    """Input pixels per feature position at VGG-19 layer ``layer``: 2^(pools up to and including it)."""
    return layer_geometry(layer).stride


def grid(last: str) -> int:
    """Tile origins must be multiples of this, so pooling windows match the whole image's."""
    return layer_geometry(last).grid


def halo(last: str) -> int:
    """Context (px) around a tile's core that makes the core's features exact."""
    return layer_geometry(last).halo


def encoder_geometry(encoder: Encoder, layers: Iterable[str]) -> LayerGeometry:
    """The geometry a tile cover must respect for all of ``layers`` of ``encoder``."""
    return cover_geometry(encoder.geometry(encoder.resolve_layer(n)) for n in layers)


def snap_core(core: int, geometry: LayerGeometry) -> int:
    """``core`` rounded down to the grid (at least one grid step)."""
    g = geometry.grid
    return max(g, core // g * g)


@dataclass(frozen=True)
class Tile:
    core: tuple[int, int, int, int]  # y0, y1, x0, x1 of the pixels this tile's features stand for
    padded: tuple[int, int, int, int]  # the core plus its halo, clipped to the image


def _spans(n: int, core: int, g: int) -> list[tuple[int, int]]:
    count = max(1, math.ceil(n / core))
    step = math.ceil(math.ceil(n / count) / g) * g  # balanced, on the grid
    edges = [min(n, i * step) for i in range(count)] + [n]
    return [(a, b) for a, b in pairwise(edges) if b > a]


def tiles(shape: tuple[int, int], core: int, last: str | LayerGeometry) -> list[Tile]:
    """Cover an (h, w) image with cores of about ``core`` px, each padded by the halo of
    ``last`` (a VGG-19 layer name, or any encoder's geometry)."""
    geo = layer_geometry(last) if isinstance(last, str) else last
    g, pad = geo.grid, geo.halo
    core = snap_core(core, geo)
    h, w = shape
    out = []
    for y0, y1 in _spans(h, core, g):
        for x0, x1 in _spans(w, core, g):
            out.append(Tile((y0, y1, x0, x1), (max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad))))
    return out


def feature_shape(shape: tuple[int, int], layer_stride: int) -> tuple[int, int]:
    """(h, w) of the whole image's feature map at a layer of stride ``layer_stride``."""
    return shape[0] // layer_stride, shape[1] // layer_stride


def feature_slices(tile: Tile, layer_stride: int, shape: tuple[int, int]
                   ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(in the tile's features, in the whole image's features) slices of the tile's core."""
    s = layer_stride
    (y0, y1, x0, x1), (py0, _, px0, _) = tile.core, tile.padded
    h, w = shape
    fh, fw = feature_shape(shape, s)
    fy1 = fh if y1 == h else y1 // s
    fx1 = fw if x1 == w else x1 // s
    whole = (slice(y0 // s, fy1), slice(x0 // s, fx1))
    local = (slice((y0 - py0) // s, fy1 - py0 // s), slice((x0 - px0) // s, fx1 - px0 // s))
    return local, whole


def _tile_cores(encoder: Encoder, image: torch.Tensor, layers: Iterable[str], core: int
                ) -> Iterator[tuple[str, torch.Tensor, tuple[slice, slice], tuple[int, int]]]:
    """For each tile and layer: (layer, the tile core's features, where they sit in the whole
    image's features, the whole feature map's (h, w)). No gradient."""
    names = sorted({encoder.resolve_layer(n) for n in layers})
    strides = {n: encoder.geometry(n).stride for n in names}
    shape = (image.shape[-2], image.shape[-1])
    for tile in tiles(shape, core, encoder_geometry(encoder, names)):
        y0, y1, x0, x1 = tile.padded
        with torch.no_grad():
            feats = encoder(image[..., y0:y1, x0:x1], names)
        for name in names:
            local, whole = feature_slices(tile, strides[name], shape)
            yield name, feats[name][..., local[0], local[1]], whole, feature_shape(shape, strides[name])
        del feats


@torch.no_grad()
def tiled_grams(encoder: Encoder, image: torch.Tensor, layers: Iterable[str], core: int) -> dict[str, torch.Tensor]:
    """The Gram matrices F·Fᵀ/n of the whole image at ``layers``, one tile at a time."""
    sums: dict[str, torch.Tensor] = {}
    sizes: dict[str, int] = {}
    for name, f, _, full in _tile_cores(encoder, image, layers, core):
        g = gram(f, 1.0)  # the sum F·Fᵀ over this core; divided by the whole map's size below
        sums[name] = sums[name].add_(g) if name in sums else g
        sizes[name] = full[0] * full[1]
    return {n: g / float(sizes[n]) for n, g in sums.items()}


@torch.no_grad()
def tiled_features(encoder: Encoder, image: torch.Tensor, layers: Iterable[str], core: int
                   ) -> dict[str, torch.Tensor]:
    """The whole image's activations at ``layers``, assembled from tiles' cores (exact)."""
    out: dict[str, torch.Tensor] = {}
    for name, f, (wy, wx), full in _tile_cores(encoder, image, layers, core):
        if name not in out:
            out[name] = f.new_empty((1, f.shape[1], *full))
        out[name][..., wy, wx] = f
    return out
