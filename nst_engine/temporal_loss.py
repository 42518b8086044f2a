"""The short-term temporal loss of Ruder, Dosovitskiy, Brox (2016) for the iterative optimizer.

    from nst_engine.temporal_loss import TemporalTarget
    stylize(frame, [style], cfg, temporal=TemporalTarget(warped_prev, mask, weight=1.0))

``warped_prev`` is the previous *stylized* frame warped to this one along the optical flow
(`nst_engine.temporal.warp`), ``mask`` (the paper's c) is 1 where that warp is valid and 0 at
disocclusions and motion boundaries (1 − `temporal.occlusion_mask`, softened). The term is the
paper's eq. 7, L = λ/D · Σ c·(x − ω)², D = 3·H·W, on the image in 0..255 as the optimizer sees it:
the pixels that were visible in the previous frame keep its paint unless style and content pull
hard, so brush strokes stop being reinvented every frame. Departure from the paper: ``weight`` 1
the mean instead of the sum (a weight means the same at any size) times `TEMPORAL_SCALE` = 100,
so that with weight 1 a frame 10 grey levels off the warped previous one costs about what the
default content loss costs at the end of a run (~1e4 at 48–512 px).

Only the short-term loss (one previous frame); the long-term loss over several earlier frames is
not implemented. The term is applied at every scale of a coarse-to-fine run, the target and mask
resized to it; runs in tiles are refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .errors import InputError
from .image import check_array
from .temporal import DEFAULT_TEMPORAL_WEIGHT

if TYPE_CHECKING:
    from .temporal import TemporalStylizer
    from .thin import Pad

__all__ = ["DEFAULT_WEIGHT", "TEMPORAL_SCALE", "TemporalTarget", "TemporalLoss", "pad_like", "prepare", "refine", "term",
           "warm_start"]

DEFAULT_WEIGHT = DEFAULT_TEMPORAL_WEIGHT  # measured: bench/bench_temporal_iterative.py
TEMPORAL_SCALE = 100.0


@dataclass
class TemporalTarget:
    """The previous stylized frame warped to this one (HxWx3 0..1, the content's aspect ratio),
    where it is valid (HxW 0..1, any size of that aspect ratio; None: everywhere), and λ."""

    warped: np.ndarray
    mask: np.ndarray | None = None
    weight: float = DEFAULT_WEIGHT


class TemporalLoss(nn.Module):
    """weight/D · Σ c·(x − ω)² over a (1,3,H,W) 0..255 image; ``name`` is its key in the loss parts."""

    name = "temporal"
    warped: torch.Tensor
    mask: torch.Tensor

    def __init__(self, warped: torch.Tensor, mask: torch.Tensor, weight: float) -> None:
        super().__init__()
        self.register_buffer("warped", warped)
        self.register_buffer("mask", mask)
        self.weight = float(weight)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        diff = (image - self.warped).square() * self.mask
        return self.weight * TEMPORAL_SCALE * diff.mean()


def prepare(target: TemporalTarget, content_shape: tuple[int, int], color: str) -> TemporalTarget:
    """``target`` checked, at the content's size, in the colours the optimizer sees
    (``preserve_colors``: luminance makes it grey, as it does the content)."""
    warped = check_array(target.warped, "temporal.warped")[..., :3]
    w = float(target.weight)
    if not (np.isfinite(w) and w >= 0.0):
        raise InputError("temporal.weight", target.weight, "must be a number ≥ 0")
    h, wd = content_shape
    for name, a in (("temporal.warped", warped), ("temporal.mask", target.mask)):
        if a is not None and abs(a.shape[1] / a.shape[0] - wd / h) > 0.02 * wd / h + 1.0 / min(a.shape[:2]):
            raise InputError(name, f"array of shape {a.shape}", f"needs the frame's aspect ratio ({wd}x{h})")
    mask = np.ones(content_shape, np.float32) if target.mask is None else np.asarray(target.mask, np.float32)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if not np.isfinite(mask).all() or mask.min() < 0.0 or mask.max() > 1.0:
        raise InputError("temporal.mask", f"array of shape {mask.shape}", "must hold values in 0..1")
    warped = _resize(warped, content_shape)
    mask = _resize(mask[..., None], content_shape)[..., 0]
    if color == "luminance":
        from .color import luminance

        warped = np.repeat(np.clip(luminance(warped), 0.0, 1.0)[..., None], 3, axis=2).astype(np.float32)
    return TemporalTarget(warped, mask, w)


def pad_like(target: TemporalTarget, pad: "Pad | None") -> TemporalTarget:
    """``target`` (from `prepare`) mirrored out as `thin.pad_for` mirrored the content."""
    if pad is None:
        return target
    from .regions import _pad_like

    return TemporalTarget(_pad_like(target.warped, pad), _pad_like(np.asarray(target.mask), pad), target.weight)


def _resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if a.shape[:2] == tuple(shape):
        return np.ascontiguousarray(a, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).numpy()


def term(target: TemporalTarget, shape: tuple[int, int], device: torch.device) -> TemporalLoss:
    """The loss at one scale of the run (the optimizer's ``shape``); ``target`` from `prepare`,
    padded like the content."""
    warped = torch.from_numpy(target.warped).permute(2, 0, 1)[None] * 255.0
    mask = torch.from_numpy(np.asarray(target.mask, np.float32))[None, None]
    if tuple(warped.shape[2:]) != tuple(shape):
        warped = F.interpolate(warped, size=shape, mode="bilinear", align_corners=False, antialias=True)
        mask = F.interpolate(mask, size=shape, mode="bilinear", align_corners=False, antialias=True)
    return TemporalLoss(warped.clamp(0, 255).to(device), mask.clamp(0, 1).to(device), target.weight)


def refine(frame: np.ndarray, start: np.ndarray, own: np.ndarray, warped: np.ndarray, mask: np.ndarray,
           steps: int, loss: dict[str, Any] | None = None, weight: float = DEFAULT_WEIGHT) -> np.ndarray:
    """The model path's temporal step with a few optimizer steps (issue #13): from ``start`` (the
    model's painting of ``frame`` blended with the warped previous output), ``steps`` L-BFGS steps
    on the model's own training loss — content: ``frame``; style: the Gram matrices of ``own``,
    the model's unblended painting of this frame — plus the temporal loss towards ``warped`` where
    ``mask`` is 1. The blend keeps the strokes in place but averages two paintings whose strokes
    do not quite line up, which dulls the texture (2× the style loss of frame by frame in
    bench/bench_temporal.py); these steps restore the frame's own texture statistics while the
    temporal loss keeps it in place. ``loss``: the model's ``training`` metadata (layers, weights);
    all arrays HxWx3 0..1 (mask HxW) of one size."""
    import tempfile

    from .api import stylize
    from .config import StyleConfig
    from .image import write_image

    t = loss or {}
    side = max(frame.shape[:2])
    base = StyleConfig()
    cfg = StyleConfig(size=side, scales=(side,), steps=steps, seed=0, style_scale=1.0,
                      content_layers=tuple(t.get("content_layers", ("relu2_2",))),
                      style_layers=tuple(t.get("style_layers", base.style_layers[:4])),
                      content_weight=float(t.get("content_weight", 1000.0)),
                      style_weight=float(t.get("style_weight", 1.0)))
    with tempfile.TemporaryDirectory(prefix="nst-refine-") as tmp:
        init = write_image(Path(tmp) / "start.tif", np.clip(start, 0.0, 1.0))
        result = stylize(frame[..., :3], [own], cfg.replace(init=str(init)),
                         temporal=TemporalTarget(warped, mask, weight))
    return np.clip(result.image, 0.0, 1.0).astype(np.float32)


def warm_start(flows: "TemporalStylizer", prev: tuple[np.ndarray, np.ndarray], frame: np.ndarray, folder: Path,
               weight: float) -> tuple[Path, TemporalTarget | None]:
    """The iterative path's start for a frame after the first (`nst video`, GIMP's frames job):
    ``prev`` = (previous frame, its output) warped along the flow to ``frame`` (the frame itself
    where it was not visible), written to ``folder``/init.tif for ``StyleConfig.init``, and the
    temporal loss towards it (None for weight 0)."""
    from .image import write_image
    from .temporal import warp

    backward, mask = flows.flow_and_mask(prev[0], frame)
    warped = warp(prev[1], backward)
    m = mask[..., None]
    init = write_image(folder / "init.tif", m * warped + (1 - m) * frame)
    return init, (TemporalTarget(warped, mask, weight) if weight > 0 else None)
