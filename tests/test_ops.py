"""nst_engine.ops: the pure tensor functions, against values worked out by hand."""
from __future__ import annotations

import torch

from nst_engine.ops import gram, match_histograms, tv_loss


def test_gram_of_known_features() -> None:
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]).reshape(1, 2, 1, 3)
    # F·Fᵀ = [[1+4+9, 0+2-3], [0+2-3, 0+1+1]]
    sums = torch.tensor([[14.0, -1.0], [-1.0, 2.0]])
    torch.testing.assert_close(gram(f, 1.0), sums)
    torch.testing.assert_close(gram(f), sums / 3)  # divided by H·W by default
    torch.testing.assert_close(gram(f.reshape(1, 2, 3, 1)), sums / 3)  # the layout of H, W does not matter
    g = gram(f.bfloat16())
    assert g.dtype == torch.float32  # reduced-precision features are summed in fp32
    torch.testing.assert_close(g, sums / 3)  # these values are exact in bf16


def test_gram_gradient_is_the_symmetric_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(1, 4, 3, 5, generator=gen, requires_grad=True)
    w = torch.randn(4, 4, generator=gen)  # not symmetric: both halves of (W + Wᵀ) must appear
    (w * gram(f)).sum().backward()
    flat = f.detach().reshape(4, 15)
    expected = ((w + w.t()) @ flat / 15).reshape(f.shape)
    assert f.grad is not None
    torch.testing.assert_close(f.grad, expected)


def test_tv_loss_value_and_gradient() -> None:
    img = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]).reshape(1, 1, 2, 3).requires_grad_(True)
    # |dx|: 1, 2, 0, 0 → mean 0.75; |dy|: 2, 1, 1 → mean 4/3
    tv = tv_loss(img)
    torch.testing.assert_close(tv, torch.tensor(0.75 + 4 / 3))
    tv.backward()
    # d/dp of mean |b − a| over the pairs (a, b): sign(b − a)/count into b, minus that into a
    # (sign(0) = 0: the subgradient torch takes at a tie).
    a = img.detach()[0, 0]
    ref = torch.zeros_like(a)
    for (y0, x0), (y1, x1), count in [*[((y, x), (y, x + 1), 4) for y in range(2) for x in range(2)],
                                      *[((0, x), (1, x), 3) for x in range(3)]]:
        s = torch.sign(a[y1, x1] - a[y0, x0]) / count
        ref[y1, x1] += s
        ref[y0, x0] -= s
    assert img.grad is not None
    torch.testing.assert_close(img.grad[0, 0], ref)


def test_match_histograms_rank_for_rank() -> None:
    # Same length: the reference's values, in the ranks of the input.
    out = match_histograms(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([[10.0, 20.0, 30.0]]))
    torch.testing.assert_close(out, torch.tensor([[30.0, 10.0, 20.0]]))
    # Five values, three reference samples: quantiles at 0, ½, 1, 1½, 2 (linear in between).
    out = match_histograms(torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [0.0, 9.0, 1.0, 8.0, 2.0]]),
                           torch.tensor([[10.0, 20.0, 30.0], [-1.0, 0.0, 1.0]]))
    torch.testing.assert_close(out, torch.tensor([[30.0, 25.0, 20.0, 15.0, 10.0], [-1.0, 1.0, -0.5, 0.5, 0.0]]))
