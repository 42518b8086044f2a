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

from typing import Any

import torch

from .errors import InputError
from .losses import GramLoss, Objective
from .ops import gram
from .tilegrid import (
    Tile,
    _tile_cores,
    encoder_geometry,
    feature_shape,
    feature_slices,
    grid,
    halo,
    receptive_field,
    snap_core,
    stride,
    tiled_features,
    tiled_grams,
    tiles,
)

# The tile geometry and the no-grad tiled passes live in `tilegrid` (which `losses` uses too);
# they stay importable from here.
__all__ = ["Tile", "TiledObjective", "grid", "halo", "receptive_field", "stride", "tiled_features", "tiled_grams", "tiles"]


class TiledObjective:
    """Same value and gradient as ``objective``, evaluated in tiles of about ``core`` px."""

    def __init__(self, objective: Objective, core: int) -> None:
        others = [t for t in objective.style if not isinstance(t, GramLoss) and not hasattr(t, "tile_gram")]
        if others:
            raise InputError("histogram_weight", "> 0",
                             "the histogram loss cannot run in tiles; set it to 0, or lower --size / raise --max-memory")
        self.objective = objective
        self.encoder = objective.encoder
        # The encoder's geometry, not VGG's: any `Encoder` tiles exactly.
        self.geometry = encoder_geometry(self.encoder, objective.layers)
        self.strides = {n: self.encoder.geometry(n).stride for n in objective.layers}
        self.core = snap_core(core, self.geometry)

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
        # Plain Grams, and the guided Grams of spatial control (`regions.GuidedGramLoss`: the same
        # sums over positions, each position weighted by the region's guidance there).
        styles: list[Any] = [t for t in obj.style if isinstance(t, GramLoss)]
        styles += [t for t in obj.style if not isinstance(t, GramLoss)]
        parts = dict.fromkeys(("content", "style", "tv"), x.new_zeros(()))
        grad = torch.zeros_like(x) if need_grad else None
        cover = tiles(shape, self.core, self.geometry)

        def cores(feats: dict[str, torch.Tensor], tile: Tile, layer: str) -> tuple[torch.Tensor, tuple[slice, slice]]:
            f = feats[layer]
            local, whole = feature_slices(tile, self.strides[layer], shape)
            return f[..., local[0], local[1]], whole

        # Pass 1: the whole image's Grams, the style loss and its gradient Ḡ with respect to them.
        gbars: list[torch.Tensor] = []
        if styles:
            grams = self._grams(x, styles)
            for term, g in zip(styles, grams, strict=True):
                g.requires_grad_(True)
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
                for content in obj.content:
                    f, (wy, wx) = cores(feats, tile, content.layer)
                    part = content.partial(f, content.target[..., wy, wx])
                    parts["content"] = parts["content"] + part.detach()
                    surrogate = surrogate + part
                if need_grad:
                    for term, gbar in zip(styles, gbars, strict=True):
                        f, whole = cores(feats, tile, term.layer)
                        if isinstance(term, GramLoss):
                            fh, fw = feature_shape(shape, self.strides[term.layer])
                            share = gram(f, float(fh * fw))
                        else:
                            share = term.tile_gram(f, whole)
                        surrogate = surrogate + (gbar * share).sum()
            if need_grad and surrogate.requires_grad:
                surrogate.backward()
                assert grad is not None and xt.grad is not None
                grad[..., y0:y1, x0:x1] += xt.grad
            del feats, surrogate, xt
        if obj.tv_weight:
            xx = x.clone().requires_grad_(need_grad)
            with torch.set_grad_enabled(need_grad):
                tv = obj.tv_term(xx)
            if need_grad:
                tv.backward()
                assert grad is not None and xx.grad is not None
                grad += xx.grad
            parts["tv"] = tv.detach()
        total = parts["content"] + parts["style"] + parts["tv"]
        return total, parts, grad

    def _grams(self, x: torch.Tensor, styles: list[Any]) -> list[torch.Tensor]:
        """Each style term's Gram of the whole image ``x``, summed over the tiles' cores."""
        plain = tiled_grams(self.encoder, x, [t.layer for t in styles if isinstance(t, GramLoss)], self.core) \
            if any(isinstance(t, GramLoss) for t in styles) else {}
        guided = [t for t in styles if not isinstance(t, GramLoss)]
        sums: dict[int, torch.Tensor] = {}
        if guided:
            for name, f, whole, _ in _tile_cores(self.encoder, x, {t.layer for t in guided}, self.core):
                for k, term in enumerate(guided):
                    if self.encoder.resolve_layer(term.layer) == name:
                        share = term.tile_gram(f, whole)
                        sums[k] = sums[k].add_(share) if k in sums else share
        it = iter(sums[k] for k in range(len(guided)))
        return [plain[t.layer].clone() if isinstance(t, GramLoss) else next(it) for t in styles]

