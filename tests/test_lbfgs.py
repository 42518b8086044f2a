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
    ours = LBFGS(50, history=10, dtype=torch.float64, max_step=None, first_step=None)  # torch's choices
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


def test_steps_are_capped_and_the_memory_follows_the_capped_step() -> None:
    """No step moves a value by more than max_step; s is the step taken, so L-BFGS still converges."""
    a = torch.diag(torch.linspace(0.01, 1.0, 20, dtype=torch.float64))
    b = torch.ones(20, dtype=torch.float64)  # solution up to 100, reached in steps of at most 5
    x = torch.zeros(20, dtype=torch.float64)
    opt = LBFGS(20, history=20, dtype=torch.float64, max_step=5.0)
    longest = []
    for _ in range(200):
        step = opt.direction(a @ x - b)
        longest.append(float(step.abs().max()))
        x = x + step
    assert max(longest) <= 5.0 + 1e-9 and sorted(longest)[-3] >= 5.0 - 1e-9  # the cap acted
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=0, atol=1e-6)


def test_the_first_step_moves_the_most_moved_value_by_first_step() -> None:
    g = torch.tensor([0.5, -2.0, 1.0, 0.0])
    step = LBFGS(4, first_step=2.0, lr=0.5).direction(g)
    torch.testing.assert_close(step, -g * 0.5)  # max |step| = 2 * lr = 1: steepest descent
    torch.testing.assert_close(LBFGS(4, first_step=None).direction(g), -g / 3.5)  # torch: g / ||g||_1
    assert torch.equal(LBFGS(4).direction(torch.zeros(4)), torch.zeros(4))  # no NaN from 0/0
