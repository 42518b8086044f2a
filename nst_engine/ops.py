"""Pure tensor functions the losses and the tiling share: no encoder, no module state."""
from __future__ import annotations

import torch


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
    """Gram matrix F·Fᵀ/n of (1, C, H, W) features (n = H·W by default), accumulated in fp32.

    The paper's G = F·Fᵀ is a plain sum; dividing by the map's size makes the style weight mean
    the same at any image size.
    """
    _, c, h, w = features.shape
    result: torch.Tensor = _Gram.apply(features.reshape(c, h * w).float(), float(h * w) if n is None else n)
    return result


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean |dx| + mean |dy| (in 0..255 pixel units)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return dx + dy


def match_histograms(values: torch.Tensor, sorted_reference: torch.Tensor) -> torch.Tensor:
    """Exact histogram matching per row: ``values`` (C, N) with each row's entries replaced,
    rank for rank, by the quantiles of the matching row of ``sorted_reference`` (C, M, sorted).

    Rank i of N gets the reference's i/(N−1) quantile, interpolated linearly between its M
    samples (Risser et al. 2017 match the histograms of the activations this way).
    """
    n, m = values.shape[1], sorted_reference.shape[1]
    pos = torch.linspace(0, m - 1, n, device=values.device)
    lo = pos.floor().long().clamp(max=m - 1)
    hi = (lo + 1).clamp(max=m - 1)
    frac = (pos - lo.float()).unsqueeze(0)
    quantiles = sorted_reference[:, lo] * (1 - frac) + sorted_reference[:, hi] * frac
    order = values.argsort(dim=1)
    return torch.empty_like(values).scatter_(1, order, quantiles)
