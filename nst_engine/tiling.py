"""Exact tiled evaluation of the objective, for images whose activations do not fit in memory.

Every loss term is a sum over feature positions (the content error, and F·Fᵀ inside each Gram),
so the loss can be evaluated tile by tile. Each tile is padded by a halo at least half the
receptive field of the deepest layer, so its core's features equal those of the whole image,
and tile origins sit on the network's pooling grid, so pooling windows line up. The style loss
needs the whole image's Gram before its gradient is known, so a step makes two passes:

1. no-grad forward of each tile: sum the cores' F·Fᵀ → the Grams G, the style loss, and
   Ḡ = ∂L/∂G per style layer (C×C matrices, tiny);
2. forward+backward of each tile on the surrogate Σ⟨Ḡ, F_t·F_tᵀ⟩ + the content error of its
   core: its gradient on the tile's pixels is exactly the tile's share of ∂L/∂x, and the shares
   (which overlap in the halos) add up to the whole image's gradient.

Peak memory is one padded tile's activations instead of the whole image's; a step costs about
1.3× (pass 1) times the halo overhead. Total variation is computed on the whole image (cheap).
The histogram loss matches the distribution of a whole layer, so it is not tiled.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .encoders.vgg import LAYER_NAMES, deepest, resolve_layer
from .errors import InputError
from .losses import TV_SCALE, GramLoss, Objective, gram, tv_loss


def receptive_field(last: str) -> int:
    """Receptive field (px) of one activation at ``last`` (3×3 convs, 2×2 stride-2 pools)."""
    rf, stride = 1, 1
    for name in LAYER_NAMES[: LAYER_NAMES.index(resolve_layer(last)) + 1]:
        if name.startswith("conv"):
            rf += 2 * stride
        elif name.startswith("pool"):
            rf += stride
            stride *= 2
    return rf


def stride(layer: str) -> int:
    """Input pixels per feature position at ``layer``: 2^(pools before it)."""
    name = resolve_layer(layer)
    return 2 ** sum(1 for n in LAYER_NAMES[: LAYER_NAMES.index(name)] if n.startswith("pool"))


def grid(last: str) -> int:
    """Tile origins must be multiples of this, so pooling windows match the whole image's."""
    return stride(last) * (2 if resolve_layer(last).startswith("pool") else 1)


def halo(last: str) -> int:
    """Context (px) around a tile's core that makes the core's features exact."""
    g = grid(last)
    return math.ceil((receptive_field(last) // 2 + 1) / g) * g


@dataclass(frozen=True)
class Tile:
    core: tuple[int, int, int, int]  # y0, y1, x0, x1 of the pixels this tile's features stand for
    padded: tuple[int, int, int, int]  # the core plus its halo, clipped to the image


def _spans(n: int, core: int, g: int) -> list[tuple[int, int]]:
    count = max(1, math.ceil(n / core))
    step = math.ceil(math.ceil(n / count) / g) * g  # balanced, on the grid
    edges = [min(n, i * step) for i in range(count)] + [n]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def tiles(shape: tuple[int, int], core: int, last: str) -> list[Tile]:
    """Cover an (h, w) image with cores of about ``core`` px, each padded by ``halo(last)``."""
    g, pad = grid(last), halo(last)
    core = max(g, core // g * g)
    h, w = shape
    out = []
    for y0, y1 in _spans(h, core, g):
        for x0, x1 in _spans(w, core, g):
            out.append(Tile((y0, y1, x0, x1), (max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad))))
    return out


def _feature_slices(tile: Tile, layer: str, shape: tuple[int, int], feat_shape: tuple[int, int]
                    ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """(in the tile's features, in the whole image's features) slices of the tile's core."""
    s = stride(layer)
    (y0, y1, x0, x1), (py0, _, px0, _) = tile.core, tile.padded
    h, w = shape
    fy1 = feat_shape[0] if y1 == h else y1 // s
    fx1 = feat_shape[1] if x1 == w else x1 // s
    whole = (slice(y0 // s, fy1), slice(x0 // s, fx1))
    local = (slice((y0 - py0) // s, fy1 - py0 // s), slice((x0 - px0) // s, fx1 - px0 // s))
    return local, whole


def _full_feature_shape(shape: tuple[int, int], layer: str) -> tuple[int, int]:
    s = stride(layer)
    return shape[0] // s, shape[1] // s


def _last(layers: list[str]) -> str:
    return deepest(layers) if layers else "relu1_1"


def _tile_cores(encoder: torch.nn.Module, image: torch.Tensor, layers: list[str], core: int
                ) -> Iterator[tuple[str, torch.Tensor, tuple[slice, slice], tuple[int, int]]]:
    """For each tile and layer: (layer, the tile core's features, where they sit in the whole
    image's features, the whole feature map's (h, w)). No gradient."""
    names = sorted({resolve_layer(n) for n in layers})
    shape = (image.shape[-2], image.shape[-1])
    for tile in tiles(shape, core, _last(names)):
        y0, y1, x0, x1 = tile.padded
        with torch.no_grad():
            feats = encoder(image[..., y0:y1, x0:x1], names)
        for name in names:
            full = _full_feature_shape(shape, name)
            local, whole = _feature_slices(tile, name, shape, full)
            yield name, feats[name][..., local[0], local[1]], whole, full
        del feats


@torch.no_grad()
def tiled_grams(encoder: torch.nn.Module, image: torch.Tensor, layers: list[str], core: int) -> dict[str, torch.Tensor]:
    """The Gram matrices F·Fᵀ/n of the whole image at ``layers``, one tile at a time."""
    sums: dict[str, torch.Tensor] = {}
    sizes: dict[str, int] = {}
    for name, f, _, full in _tile_cores(encoder, image, layers, core):
        g = gram(f, 1.0)  # the sum F·Fᵀ over this core; divided by the whole map's size below
        sums[name] = sums[name].add_(g) if name in sums else g
        sizes[name] = full[0] * full[1]
    return {n: g / float(sizes[n]) for n, g in sums.items()}


@torch.no_grad()
def tiled_features(encoder: torch.nn.Module, image: torch.Tensor, layers: list[str], core: int
                   ) -> dict[str, torch.Tensor]:
    """The whole image's activations at ``layers``, assembled from tiles' cores (exact)."""
    out: dict[str, torch.Tensor] = {}
    for name, f, (wy, wx), full in _tile_cores(encoder, image, layers, core):
        if name not in out:
            out[name] = f.new_empty((1, f.shape[1], *full))
        out[name][..., wy, wx] = f
    return out


class TiledObjective:
    """Same value and gradient as ``objective``, evaluated in tiles of about ``core`` px."""

    def __init__(self, objective: Objective, core: int) -> None:
        others = [t for t in objective.style if not isinstance(t, GramLoss)]
        if others:
            raise InputError("histogram_weight", "> 0",
                             "the histogram loss cannot run in tiles; set it to 0, or lower --size / raise --max-memory")
        self.objective = objective
        self.encoder = objective.encoder
        self.last = _last(sorted(objective.layers))
        self.core = max(grid(self.last), core // grid(self.last) * grid(self.last))

    @property
    def layers(self) -> set[str]:
        return self.objective.layers

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        total, parts, _ = self.value_and_grad(image, need_grad=False)
        return total, parts

    def value_and_grad(self, image: torch.Tensor, need_grad: bool = True
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        x = image.detach()
        shape = (x.shape[-2], x.shape[-1])
        obj = self.objective
        styles = [t for t in obj.style if isinstance(t, GramLoss)]
        parts = dict.fromkeys(("content", "style", "tv"), x.new_zeros(()))
        grad = torch.zeros_like(x) if need_grad else None
        cover = tiles(shape, self.core, self.last)

        def cores(feats: dict[str, torch.Tensor], tile: Tile, layer: str) -> tuple[torch.Tensor, tuple[slice, slice]]:
            f = feats[layer]
            local, whole = _feature_slices(tile, layer, shape, _full_feature_shape(shape, layer))
            return f[..., local[0], local[1]], whole

        # Pass 1: the whole image's Grams, the style loss and its gradient Ḡ with respect to them.
        gbars: list[torch.Tensor] = []
        if styles:
            grams = tiled_grams(self.encoder, x, [t.layer for t in styles], self.core)
            for term in styles:
                g = grams[term.layer].requires_grad_(True)
                loss = term.loss_from_gram(g)
                if need_grad:
                    loss.backward()
                    assert g.grad is not None
                    gbars.append(g.grad)
                parts["style"] = parts["style"] + loss.detach()
        # Pass 2: each tile's share of the gradient (and the content loss, which is local).
        need_pass2 = need_grad or obj.content
        for tile in cover if need_pass2 else []:
            y0, y1, x0, x1 = tile.padded
            xt = x[..., y0:y1, x0:x1].clone().requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                feats = self.encoder(xt, self.layers if need_grad else {t.layer for t in obj.content})
                surrogate = xt.new_zeros(())
                for term in obj.content:
                    f, (wy, wx) = cores(feats, tile, term.layer)
                    part = term.partial(f, term.target[..., wy, wx])
                    parts["content"] = parts["content"] + part.detach()
                    surrogate = surrogate + part
                if need_grad:
                    for term, gbar in zip(styles, gbars):
                        f, _ = cores(feats, tile, term.layer)
                        fh, fw = _full_feature_shape(shape, term.layer)
                        surrogate = surrogate + (gbar * gram(f, float(fh * fw))).sum()
            if need_grad and surrogate.requires_grad:
                surrogate.backward()
                assert grad is not None and xt.grad is not None
                grad[..., y0:y1, x0:x1] += xt.grad
            del feats, surrogate, xt
        if obj.tv_weight:
            xx = x.clone().requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                tv = TV_SCALE * obj.tv_weight * tv_loss(xx)
            if need_grad:
                tv.backward()
                assert grad is not None and xx.grad is not None
                grad += xx.grad
            parts["tv"] = tv.detach()
        total = parts["content"] + parts["style"] + parts["tv"]
        return total, parts, grad

