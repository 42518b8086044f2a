"""What the losses, the tiling and the optimizer need from a feature encoder (no torch at run time).

An encoder maps an RGB image in 0..255, shape (1, 3, H, W), to named feature maps. Everything
else in the engine talks to it through `Encoder`, so VGG-19 is one encoder among others: the unit
tests run the whole objective on a tiny seeded network (tests/tiny_encoder.py).

The geometry of a layer (receptive field and stride) is what exact tiling needs to know: how much
context around a tile makes its features those of the whole image, and on which pixel grid tile
origins must sit so that pooling windows line up.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LayerGeometry:
    """Where a layer's feature positions sit on the input pixels.

    Position (i, j) of the map sees input pixels around (i·stride, j·stride), a window of
    ``receptive_field`` px; a map of an (h, w) image has shape (h // stride, w // stride).
    """

    receptive_field: int  # px seen by one activation
    stride: int  # input px per feature position

    @property
    def grid(self) -> int:
        """Tile origins must be multiples of this so every pooling window matches the whole image's."""
        return self.stride

    @property
    def halo(self) -> int:
        """Context (px) around a tile's core that makes the core's features exact; on the grid."""
        g = self.grid
        return math.ceil((self.receptive_field // 2 + 1) / g) * g


def cover_geometry(geometries: Iterable[LayerGeometry]) -> LayerGeometry:
    """One geometry that serves all of ``geometries`` at once: the widest field, the coarsest grid.

    Strides are powers of two in the networks here, so the largest is a multiple of the others.
    With no layer at all, a 3×3 conv's (what VGG's first layer needs).
    """
    gs = list(geometries)
    if not gs:
        return LayerGeometry(3, 1)
    return LayerGeometry(max(g.receptive_field for g in gs), max(g.stride for g in gs))


def sequential_geometry(names: Sequence[str]) -> dict[str, LayerGeometry]:
    """Geometry of each layer of a plain chain named ``conv…``/``relu…``/``pool…``.

    Assumes what VGG uses: 3×3 convs with padding 1 (stride 1) and 2×2 pools with stride 2.
    A conv adds 2·stride to the receptive field; a pool adds stride, then doubles it.
    """
    rf, stride = 1, 1
    out: dict[str, LayerGeometry] = {}
    for name in names:
        if name.startswith("conv"):
            rf += 2 * stride
        elif name.startswith("pool"):
            rf += stride
            stride *= 2
        elif not name.startswith("relu"):
            raise ValueError(f"layer {name!r}: not a conv, relu or pool layer")
        out[name] = LayerGeometry(rf, stride)
    return out


@runtime_checkable
class Encoder(Protocol):
    """A frozen feature encoder with named layers, as the losses and the tiling use it."""

    def __call__(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """The activations at ``layers`` (canonical names as keys) of a (1, 3, H, W) 0..255 image."""
        ...

    def resolve_layer(self, name: str) -> str:
        """The canonical name of layer ``name``; raises `InputError` for a layer it does not know."""
        ...

    def geometry(self, layer: str) -> LayerGeometry:
        """Receptive field and stride of ``layer`` (canonical name)."""
        ...
