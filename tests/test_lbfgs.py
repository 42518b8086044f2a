"""Our device-friendly L-BFGS against torch.optim.LBFGS (max_iter=1, no line search)."""
from __future__ import annotations

import torch

from nst_engine.lbfgs import LBFGS


def test_matches_torch_lbfgs_on_a_quadratic() -> None:
    torch.manual_seed(0)
    a = torch.randn(50, 50, dtype=torch.float64)
    a = a @ a.T + 50 * torch.eye(50, dtype=torch.float64)
    b = torch.randn(50, dtype=torch.float64)
    x = torch.zeros(50, dtype=torch.float64)
    ours = LBFGS(50, history=10, dtype=torch.float64)
    xt = torch.zeros(50, dtype=torch.float64, requires_grad=True)
    ref = torch.optim.LBFGS([xt], lr=1, max_iter=1, history_size=10, tolerance_grad=0, tolerance_change=0)

    def closure() -> torch.Tensor:
        ref.zero_grad()
        loss = 0.5 * xt @ a @ xt - b @ xt
        loss.backward()
        return loss

    for _ in range(25):  # more steps than the history holds: the ring buffer wraps
        x = x + ours.direction(a @ x - b)
        ref.step(closure)
    torch.testing.assert_close(x, xt.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=0, atol=1e-6)


def test_tiny_gradients_still_build_memory() -> None:
    """Scale-free curvature test: a loss scaled by 1e-12 converges like the unscaled one."""
    torch.manual_seed(1)
    a = torch.diag(torch.linspace(1, 10, 20, dtype=torch.float64)) * 1e-12
    x = torch.ones(20, dtype=torch.float64)
    opt = LBFGS(20, history=20, dtype=torch.float64)
    for _ in range(40):
        x = x + opt.direction(a @ x)
    assert x.abs().max() < 1e-6 and opt.rho.abs().sum() > 0
