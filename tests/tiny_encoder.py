"""A tiny seeded feature encoder for unit tests: no weight file, microseconds per pass.

Two 3×3 convs with a 2×2 pool between them, named as VGG's first layers but with widths VGG does
not have (5 and 7 channels by default), and random weights fixed by a seed. It satisfies
`nst_engine.encoders.base.Encoder`, so the losses, the objective and the tiling run on it
exactly as on VGG-19.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from nst_engine.encoders.base import LayerGeometry, sequential_geometry
from nst_engine.errors import InputError

NAMES: tuple[str, ...] = ("conv1_1", "relu1_1", "pool1", "conv2_1", "relu2_1")


class TinyEncoder(nn.Module):
    """conv1_1 → relu1_1 → pool1 → conv2_1 → relu2_1, frozen, seeded."""

    def __init__(self, channels: tuple[int, int] = (5, 7), seed: int = 0,
                 pooling: Literal["max", "avg"] = "max", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        convs: list[nn.Conv2d] = []
        c_in = 3
        for c_out in channels:
            conv = nn.Conv2d(c_in, c_out, 3, padding=1, dtype=dtype)
            # He-style scale so activations stay O(1) through both layers.
            conv.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3, generator=g, dtype=dtype) * (2 / (9 * c_in)) ** 0.5,
                                       requires_grad=False)
            conv.bias = nn.Parameter(torch.randn(c_out, generator=g, dtype=dtype) * 0.1, requires_grad=False)
            convs.append(conv)
            c_in = c_out
        pool: nn.Module = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
        self.layers = nn.ModuleList([convs[0], nn.ReLU(), pool, convs[1], nn.ReLU()])
        self.channels, self.dtype = channels, dtype
        self._geometry = sequential_geometry(NAMES)
        self.eval()

    def resolve_layer(self, name: str) -> str:
        key = name.strip().lower()
        if key not in NAMES:
            raise InputError("layer", name, f"unknown layer of the tiny encoder; use one of {', '.join(NAMES)}")
        return key

    def geometry(self, layer: str) -> LayerGeometry:
        return self._geometry[self.resolve_layer(layer)]

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = {self.resolve_layer(n) for n in layers}
        out: dict[str, torch.Tensor] = {}
        x = image.to(self.dtype) / 255.0 - 0.5  # 0..255 in, as VGG's input
        for name, layer in zip(NAMES, self.layers, strict=True):
            if not wanted - out.keys():
                break
            x = layer(x)
            if name in wanted:
                out[name] = x
        return out
