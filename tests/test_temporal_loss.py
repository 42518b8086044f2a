"""The short-term temporal loss (Ruder et al. 2016, eq. 7) of the iterative path (issue #13).

The loss module on tensors; runs through `stylize` on the real VGG-19 at 48 px, few steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import small

from nst_engine.api import stylize
from nst_engine.config import StyleConfig
from nst_engine.errors import InputError
from nst_engine.temporal_loss import TEMPORAL_SCALE, TemporalLoss, TemporalTarget, prepare, term


def _img(seed: int) -> torch.Tensor:
    return torch.rand((1, 3, 16, 20), generator=torch.Generator().manual_seed(seed)) * 255


def test_zero_for_a_perfectly_warped_frame_and_positive_otherwise():
    w = _img(0)
    loss = TemporalLoss(w, torch.ones(1, 1, 16, 20), 1.0)
    assert float(loss(w.clone())) == 0.0
    assert float(loss(_img(1))) > 0.0


def test_the_mask_frees_occluded_pixels_and_weight_scales():
    w, x = _img(0), _img(1)
    mask = torch.zeros(1, 1, 16, 20)
    mask[..., :10] = 1.0
    left = TemporalLoss(w, mask, 2.0)
    y = x.clone()
    y[..., :10] = w[..., :10]  # equal to the target wherever the mask is 1
    assert float(left(y)) == 0.0
    full = TemporalLoss(w, torch.ones_like(mask), 1.0)
    # eq. 7 with the mean over 3·H·W of (x − ω)² (0..255 units) for the sum, times TEMPORAL_SCALE
    expected = TEMPORAL_SCALE * float((x - w).square().mean())
    assert float(full(x)) == pytest.approx(expected, rel=1e-5)
    assert float(TemporalLoss(w, torch.ones_like(mask), 3.0)(x)) == pytest.approx(3 * expected, rel=1e-5)


def test_prepare_resizes_to_the_content_and_term_to_the_scale():
    warped = np.random.default_rng(0).random((24, 32, 3)).astype(np.float32)
    t = prepare(TemporalTarget(warped, None, 1.0), (48, 64), "none")
    assert t.warped.shape == (48, 64, 3) and t.mask is not None and t.mask.shape == (48, 64)
    loss = term(t, (12, 16), torch.device("cpu"))
    assert loss.warped.shape == (1, 3, 12, 16) and loss.mask.shape == (1, 1, 12, 16)
    grey = prepare(TemporalTarget(warped, None, 1.0), (48, 64), "luminance").warped
    assert np.allclose(grey[..., 0], grey[..., 1]) and np.allclose(grey[..., 1], grey[..., 2])


@pytest.mark.parametrize(("target", "argument"), [
    (TemporalTarget(np.zeros((10, 40, 3), np.float32)), "temporal.warped"),  # aspect ratio
    (TemporalTarget(np.zeros((48, 64, 3), np.float32), np.full((48, 64), 2.0, np.float32)), "temporal.mask"),
    (TemporalTarget(np.zeros((48, 64, 3), np.float32), None, -1.0), "temporal.weight"),
])
def test_bad_targets_name_the_argument(target, argument):
    with pytest.raises(InputError) as e:
        prepare(target, (48, 64), "none")
    assert e.value.argument == argument


def test_stylize_keeps_the_visible_pixels_near_the_previous_frame():
    """A strong temporal weight holds the result near the warped previous output where the mask
    is 1, and leaves the masked-out half to style and content."""
    content = small("sample:astronaut", 48)
    style = small("style:swirls", 48)
    cfg = StyleConfig(size=48, steps=30, seed=0, scales=(48,))
    free = stylize(content, [style], cfg).image
    previous = np.clip(content[..., :3] * 0.5 + 0.25, 0, 1).astype(np.float32)  # far from `free`
    mask = np.zeros(content.shape[:2], np.float32)
    mask[:, : content.shape[1] // 2] = 1.0
    held = stylize(content, [style], cfg, temporal=TemporalTarget(previous, mask, weight=1000.0))
    assert "temporal" in held.losses
    half = content.shape[1] // 2
    err_free = np.abs(free[:, :half] - previous[:, :half]).mean()
    err_held = np.abs(held.image[:, :half] - previous[:, :half]).mean()
    assert err_held < 0.4 * err_free
    # the other half is not held: it stays far from `previous`, like the free run
    assert np.abs(held.image[:, half + 4:] - previous[:, half + 4:]).mean() > 0.5 * err_free


def test_temporal_refuses_tiles():
    content = small("sample:astronaut", 48)
    with pytest.raises(InputError) as e:
        stylize(content, [content], StyleConfig(size=48, steps=1, tile=32),
                temporal=TemporalTarget(content[..., :3]))
    assert e.value.argument == "tile"
